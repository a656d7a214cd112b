"""Service faults: real loads into Azurite through a proxy that breaks some requests.

Every load here runs ``python -m clfsload`` against :class:`FaultProxy` in
front of the session's Azurite. The proxy answers a fraction of the requests
with 500, 503 or 429 + Retry-After itself, resets connections, stalls
requests past the client's timeout, or cuts answers short. Each load must
still exit 0 with a container (read straight from Azurite, not through the
proxy) canonical-equal to a clean load of the same tree, and the test checks
that the faults really were injected. A permanent 403 stops a run with one
clear line and a resumable state; once it is lifted, the same command without
``--new`` completes.

A few quick tests come first: the proxy itself against a stdlib echo server,
the classification of answers cut off mid-body, the test hook.

The clients' timeouts and back-off are shortened through the
``CLFSLOAD_TEST_RETRY`` test hook, so a stall costs about two seconds. The
module prints, at its end, the requests seen and the faults injected per
kind (also written to ``/tmp/clfsload-service-faults.txt``).
"""

import collections
import contextlib
import http.client
import http.server
import os
import random
import threading
import urllib.parse

import pytest

from clfsload.clfs.canonical import canonical_form, diff_canonical
from clfsload.clfs.container import Container
from clfsload.clfs.constants import TMP_PREFIX
from clfsload.clfs.objects import bucket_blob, final_root_name
from clfsload.errors import TransientError
from clfsload.targets import open_target
from clfsload.targets.azure_errors import AuthMode, ErrorMapper
from clfsload.targets.base import RESERVED_PREFIX
from clfsload.targets.retry import TEST_RETRY_ENV, RetrySettings, default_retry_settings

from _load import GOLDEN_MASK, TargetSource, cli
from azurite import azurite  # noqa: F401
from fault_proxy import Fault, FaultProxy

#: Per-attempt timeouts of 2 s and short back-off: a stall costs ~2 s, not 120.
FAST_RETRY = {"CLFSLOAD_TEST_RETRY": "read_timeout=2,connect_timeout=2,base_delay=0.05,max_delay=0.5"}
#: A load that hangs fails the test instead of the session.
LOAD_TIMEOUT_S = 120
#: How long the proxy holds a stalled request: longer than a load may take,
#: so only the client's own timeouts can get a load past a stall.
STALL_S = 5 * LOAD_TIMEOUT_S
SUMMARY_FILE = "/tmp/clfsload-service-faults.txt"
MiB = 1024 * 1024
#: the root inode's name until FINALIZE publishes it
TMP_ROOT = TMP_PREFIX + final_root_name()


class _Echo(http.server.BaseHTTPRequestHandler):
    """An upstream for the proxy's own test: records each request, answers with its body."""

    protocol_version = "HTTP/1.1"
    seen: list = []

    def do_PUT(self):
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()  # the empty line after the last chunk (no trailers)
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append((self.command, self.path, list(self.headers.items()), body, self.client_address))
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT

    def log_message(self, *args):
        pass


def blob_of(path: str) -> str:
    """The blob name in a request path ``/<account>/<container>/<blob>`` ('' for container calls)."""
    parts = path.split("/", 3)
    return urllib.parse.unquote(parts[3]) if len(parts) > 3 else ""


def is_transfer_put(method: str, path: str) -> bool:
    """A Put Blob of TRANSFER: not an access probe, not the bucket object written by INIT."""
    name = blob_of(path)
    return method == "PUT" and bool(name) and not name.startswith(RESERVED_PREFIX) \
        and name != bucket_blob("").name


def make_fault_tree(root):
    """About 110 entries: a 2-segment file (8 MiB + 16 KiB + 4 KiB), a directory
    needing a second directory segment (80 names of 200 bytes), nesting, links."""
    rng = random.Random(20240611)
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "wide").mkdir()
    (root / "big.bin").write_bytes(rng.randbytes(8 * MiB + 16 * 1024 + 4097))
    (root / "a" / "mid.bin").write_bytes(rng.randbytes(100_000))
    (root / "a" / "b" / "text.txt").write_bytes(b"fault tolerant\n" * 3000)
    (root / "a" / "b" / "c" / "zero").write_bytes(b"")
    for i in range(12):
        (root / "a" / ("small-%02d" % i)).write_bytes(rng.randbytes(rng.randint(1, 3000)))
    for i in range(80):
        (root / "wide" / ("%03d-" % i + "w" * 196)).write_bytes(b"%d\n" % i)
    os.symlink("a/b/text.txt", root / "link")
    return root


def canonical_of(az, container):
    """The canonical form of *container*, read directly from Azurite; checks it is finished and clean."""
    target = open_target(az.endpoint, container, az.connection_string)
    try:
        found = Container(TargetSource(target))
        assert found.finished, "the root was not published"
        assert not found.tmp_names, found.tmp_names
        assert not found.strays(), found.strays()[:5]
        return canonical_form(found, mask=GOLDEN_MASK)
    finally:
        target.close()


class FaultLog:
    """The figures of every load in the module: requests seen and faults injected per kind."""

    def __init__(self):
        self.rows = []

    def add(self, test, stats):
        self.rows.append((test, stats))

    def lines(self):
        total = collections.Counter()
        requests = 0
        out = []
        for test, stats in self.rows:
            out.append("  %-52s %s" % (test, stats))
            total.update(stats.faults)
            requests += stats.requests
        kinds = ", ".join("%s: %d" % kv for kv in sorted(total.items()))
        out.append("  %-52s %d faults injected out of %d requests (%s)"
                   % ("all loads", sum(total.values()), requests, kinds))
        return ["service faults through the proxy, per test:"] + out


@pytest.fixture(scope="module")
def fault_log(request):
    """Collects the figures; prints them and writes them to SUMMARY_FILE when the module ends."""
    log = FaultLog()
    yield log
    lines = log.lines()
    with open(SUMMARY_FILE, "w") as f:
        f.write("\n".join(lines) + "\n")
    # Shown even without -s: pytest's capture is suspended while it prints.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        print("\n" + "\n".join(lines), flush=True)


@pytest.fixture(scope="module")
def proxy(azurite):
    """One proxy in front of Azurite for the module; its rules are set per test."""
    with FaultProxy(azurite.endpoint) as running:
        yield running


@pytest.fixture
def faults(proxy, fault_log, request):
    """The proxy with fresh counters; records this test's figures and clears the rules afterwards."""
    proxy.configure([], seed=0)
    proxy.deny(False)
    proxy.reset_stats()
    yield proxy
    fault_log.add(request.node.name, proxy.reset_stats())
    proxy.configure([])
    proxy.deny(False)


@pytest.fixture(scope="module")
def fault_tree(tmp_path_factory):
    return make_fault_tree(tmp_path_factory.mktemp("faulttree") / "tree")


@pytest.fixture(scope="module")
def reference(azurite, proxy, fault_log, fault_tree, tmp_path_factory):
    """The canonical form of a clean load of the fault tree (through the proxy, no fault)."""
    proxy.configure([])
    proxy.reset_stats()
    container = azurite.create_container()
    done = load(proxy, tmp_path_factory.mktemp("reference") / "state", fault_tree, container,
                azurite.make_sas(container))
    assert done.returncode == 0, done.stdout + done.stderr
    stats = proxy.reset_stats()
    assert stats.injected == 0
    fault_log.add("clean reference load", stats)
    form = canonical_of(azurite, container)
    # The tree covers what it is meant to: a file and a directory with segments of their own.
    assert len(form["objects"]["/big.bin"]["segments"]) == 2
    assert len(form["objects"]["/wide"]["segments"]) == 1
    return form


def load(proxy, state, source, container, sas, *extra, new=True):
    """``python -m clfsload`` through the proxy, with the short test timeouts."""
    args = (["--new"] if new else []) + [str(state), str(source), proxy.endpoint, container, sas, *extra]
    return cli(*args, env=FAST_RETRY, timeout=LOAD_TIMEOUT_S)


def assert_survived(done, az, container, reference):
    """Exit 0, no traceback, and the container equals the clean load's."""
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    differences = diff_canonical(reference, canonical_of(az, container))
    assert differences == [], "\n".join(map(str, differences[:20]))


def test_broken_answer_bodies_are_retryable():
    """What the SDKs raise for an answer cut off mid-body is retried, however deeply it is wrapped."""
    import requests
    import urllib3
    from azure.core.exceptions import HttpResponseError

    mapper = ErrorMapper("acct", "cont", "http://127.0.0.1:1/acct", AuthMode("sas", "the SAS token"))
    reset = ConnectionResetError(104, "Connection reset by peer")
    broken = requests.exceptions.ChunkedEncodingError(urllib3.exceptions.ProtocolError("Connection broken", reset))
    transport = HttpResponseError(broken, error=broken)  # azure-core: "Unable to stream download."
    downloader = HttpResponseError(transport, error=transport)  # azure-storage-blob's downloader, after its tries
    for exc in (transport, downloader):
        failure = mapper.classify(exc, "get", "blob")
        assert failure.retryable and isinstance(failure.error, TransientError), failure
    # A status-less error that is not about the connection is still not retried.
    odd = HttpResponseError("something else")
    assert not mapper.classify(odd, "get", "blob").retryable


def test_test_retry_hook():
    assert default_retry_settings({}) == RetrySettings()
    fast = default_retry_settings({TEST_RETRY_ENV: "read_timeout=2, connect_timeout=1.5,max_attempts=3,"})
    assert (fast.read_timeout, fast.connect_timeout, fast.max_attempts) == (2.0, 1.5, 3)
    assert fast.total_timeout == RetrySettings().total_timeout
    with pytest.raises(ValueError, match="unknown retry setting 'sig'"):
        default_retry_settings({TEST_RETRY_ENV: "sig=abc"})
    with pytest.raises(ValueError) as bad:
        default_retry_settings({TEST_RETRY_ENV: "base_delay=s3cr3t"})
    assert "s3cr3t" not in str(bad.value)


def test_proxy_forwards_unchanged_and_breaks_on_demand():
    """The proxy itself: requests arrive byte for byte (chunked ones chunked), on one
    kept-alive connection; faults look as they should from a plain HTTP client."""
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    _Echo.seen = []
    try:
        with FaultProxy("http://127.0.0.1:%d/acct" % upstream.server_port, seed=1) as proxy:
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
            conn.request("PUT", "/acct/c/one?sig=x%2By", body=b"a" * 70000, headers={"x-ms-meta-k": "v"})
            answer = conn.getresponse()
            assert (answer.status, answer.read()) == (201, b"a" * 70000)
            conn.request("PUT", "/acct/c/two", body=iter([b"chunk", b"ed"]), encode_chunked=True)
            assert conn.getresponse().read() == b"chunked"
            method, path, headers, body, peer = _Echo.seen[0]
            assert (method, path, body) == ("PUT", "/acct/c/one?sig=x%2By", b"a" * 70000)
            assert ("x-ms-meta-k", "v") in headers and ("Host", "127.0.0.1:%d" % proxy.port) in headers
            assert ("Transfer-Encoding", "chunked") in _Echo.seen[1][2] and _Echo.seen[1][3] == b"chunked"
            assert _Echo.seen[1][4] == peer  # one upstream connection per client connection, kept alive

            proxy.configure([Fault("429", 1.0, methods={"GET"}, retry_after=3)])
            conn.request("GET", "/acct/c/one")
            answer = conn.getresponse()
            assert answer.status == 429 and answer.getheader("Retry-After") == "3"
            assert b"<Code>ServerBusy</Code>" in answer.read()
            proxy.configure([Fault("truncate", 1.0)])
            conn.request("PUT", "/acct/c/three", body=b"b" * 1000)
            with pytest.raises(http.client.IncompleteRead):
                conn.getresponse().read()
            proxy.configure([Fault("reset", 1.0, stage="head")])
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
            conn.request("GET", "/acct/c/one")
            with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
                conn.getresponse()
            proxy.configure([])
            proxy.deny(True)
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
            conn.request("GET", "/acct/c/one")
            answer = conn.getresponse()
            assert answer.status == 403 and answer.getheader("x-ms-error-code") == "AuthenticationFailed"
            assert proxy.stats().requests == 6
            assert proxy.stats().faults == {"429": 1, "truncate": 1, "reset": 1, "403": 1}
            assert len(_Echo.seen) == 3  # the status answers and the early reset never reached upstream
    finally:
        upstream.shutdown()
        upstream.server_close()


# Each list of rules gives about 15 % of the requests one fault kind.
SINGLE_KIND = {
    "500": [Fault("500", 0.15)],
    "503": [Fault("503", 0.15)],
    "429-retry-after": [Fault("429", 0.10, retry_after=1)],
    "reset": [Fault("reset", 0.05, stage="head"), Fault("reset", 0.05, stage="request"),
              Fault("reset", 0.05, stage="response")],
    "stall": [
        # the 8 MiB segment's body stops being read once: the client's body watch must notice
        Fault("stall", 1.0, stage="head", min_length=MiB, limit=1, seconds=STALL_S),
        # 7.5 %, not 15: every stall costs the 2 s client timeout, and they add up along the tree's depth
        Fault("stall", 0.025, stage="head", seconds=STALL_S),
        Fault("stall", 0.025, stage="request", seconds=STALL_S),
        Fault("stall", 0.025, stage="response", seconds=STALL_S),
    ],
    "truncate": [
        # The GETs are few: cut the access probe's 404 short once, and the GET of the root
        # before its publication three times, which outlasts azure-storage-blob's own
        # download retries (3), so the loader's retry layer must take over.
        Fault("truncate", 1.0, methods={"GET"}, path=lambda p: blob_of(p).startswith(RESERVED_PREFIX), limit=1),
        Fault("truncate", 1.0, methods={"GET"}, path=lambda p: blob_of(p) == TMP_ROOT, limit=3),
        Fault("truncate", 0.15),
    ],
}
MIN_INJECTED = 5


@pytest.mark.parametrize("kind", sorted(SINGLE_KIND))
def test_load_survives_one_fault_kind(kind, faults, azurite, fault_tree, reference, tmp_path):
    container = azurite.create_container()
    faults.configure(SINGLE_KIND[kind], seed=len(kind))
    done = load(faults, tmp_path / "state", fault_tree, container, azurite.make_sas(container))
    stats = faults.stats()
    assert_survived(done, azurite, container, reference)
    wanted = SINGLE_KIND[kind][0].kind
    assert set(stats.faults) == {wanted}, stats
    assert stats.faults[wanted] >= MIN_INJECTED, stats


MIXED = [
    Fault("500", 0.03),
    Fault("503", 0.03),
    Fault("429", 0.03, retry_after=1),
    Fault("reset", 0.02, stage="head"),
    Fault("reset", 0.02, stage="response"),
    Fault("stall", 0.02, stage="request", seconds=STALL_S),
    Fault("truncate", 0.03),
]


def test_load_survives_every_fault_kind_mixed(faults, azurite, fault_tree, reference, tmp_path):
    container = azurite.create_container()
    faults.configure(MIXED, seed=7)
    done = load(faults, tmp_path / "state", fault_tree, container, azurite.make_sas(container))
    stats = faults.stats()
    assert_survived(done, azurite, container, reference)
    assert stats.injected >= 2 * MIN_INJECTED and len(stats.faults) >= 4, stats


def test_permanent_403_stops_then_resumes(faults, azurite, fault_tree, reference, tmp_path):
    container = azurite.create_container()
    sas = azurite.make_sas(container)
    state = tmp_path / "state"
    # INIT and the access checks pass; the first Put Blob of TRANSFER and all after it get 403.
    faults.deny(True, when=is_transfer_put)
    done = load(faults, state, fault_tree, container, sas)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    errors = [line for line in done.stdout.splitlines() if " ERR " in line]
    assert len(errors) == 1, done.stdout[-4000:]
    assert "SAS" in errors[0] and "rejected" in errors[0] and "AuthenticationFailed" in errors[0], errors[0]
    assert sas.split("sig=")[1][:12] not in output
    assert faults.stats().faults.get("403", 0) >= 1
    assert (state / "state.db").exists()
    # The credential is fixed: the same command without --new finishes the load.
    faults.deny(False)
    again = load(faults, state, fault_tree, container, sas, new=False)
    assert_survived(again, azurite, container, reference)
