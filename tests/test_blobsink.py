"""Smoke test of the benchmark Blob sink (bench/blobsink): a real load and verify through it, auth, delay.

The sink is a benchmark tool, not a test double (the Azure tests run on
Azurite): this only shows it speaks what the loader and ``verify`` call,
refuses a bad signature as the service does, and holds answers for its
delay. Seconds, not minutes.
"""

import http.client
import os
import time
import urllib.parse

import pytest

from _load import cli

from bench.blobsink import BlobSink

#: the delay test's round trip (the loads run against a sink of 5 ms, to stay quick)
DELAY = 0.2


@pytest.fixture(scope="module")
def sink():
    """One sink for the module's loads, holding each answer 5 ms."""
    with BlobSink(0.005) as running:
        yield running


def small_tree(root):
    """Three directories of a few small files, one empty file, one subdirectory."""
    for d in range(3):
        folder = root / ("dir%d" % d)
        folder.mkdir(parents=True)
        for f in range(4):
            (folder / ("file%d.txt" % f)).write_bytes(os.urandom(700 * f + 13))
    (root / "dir0" / "empty").write_bytes(b"")
    (root / "dir1" / "sub").mkdir()
    (root / "dir1" / "sub" / "deep.bin").write_bytes(b"x" * 70000)
    return root


def test_load_then_verify_through_the_sink(sink, tmp_path):
    source = small_tree(tmp_path / "src")
    container = sink.create_container()
    sas = sink.make_sas(container)
    done = cli("--new", str(tmp_path / "state"), str(source), sink.endpoint, container, sas)
    assert done.returncode == 0, done.stdout + done.stderr
    checked = cli("verify", "--deep", "--credential", sas, sink.endpoint, container, str(source))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "OK" in checked.stdout
    # The driver's calls (SharedKey) with the account key instead of a SAS.
    keyed = sink.create_container()
    done = cli("--new", str(tmp_path / "state2"), str(source), sink.endpoint, keyed, "-",
               env={"CLFSLOAD_ACCOUNT_KEY": sink.key})
    assert done.returncode == 0, done.stdout + done.stderr
    checked = cli("verify", "--credential", sink.key, sink.endpoint, keyed, str(source))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    stats = sink.stats()
    assert stats["unsupported"] == 0, stats
    assert stats["puts"] > 20 and stats["lists"] > 0, stats


def test_bad_sas_and_bad_key_are_refused_with_403(sink, tmp_path):
    container = sink.create_container()
    wrong_key = "QUJD" * 22  # base64, not the sink's key
    bad_sas = sink.make_sas(container, key=wrong_key)
    status, code = raw_request(sink, "PUT", "/%s/blob1?%s" % (container, bad_sas), b"data")
    assert (status, code) == (403, "AuthenticationFailed")
    status, code = raw_request(sink, "PUT", "/%s/blob1?%s" % (container, sink.make_sas(container)), b"data")
    assert status == 201
    status, code = raw_request(sink, "DELETE", "/%s/blob1?%s" % (container, sink.make_sas(container, "r")))
    assert (status, code) == (403, "AuthorizationPermissionMismatch")
    # The loader with the bad SAS fails, and so does the SDK (SharedKey) with the wrong key.
    source = small_tree(tmp_path / "src")
    done = cli("--new", str(tmp_path / "state"), str(source), sink.endpoint, container, bad_sas)
    assert done.returncode != 0
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import ContainerClient

    with ContainerClient(sink.endpoint, container, credential={"account_name": sink.account,
                                                               "account_key": wrong_key}) as client:
        with pytest.raises(HttpResponseError) as refused:
            list(client.list_blobs())
    assert refused.value.status_code == 403
    assert refused.value.error_code == "AuthenticationFailed"


def test_every_answer_waits_the_delay():
    with BlobSink(DELAY) as slow:
        container = slow.create_container()
        sas = slow.make_sas(container)
        for _ in range(3):
            start = time.monotonic()
            status, _ = raw_request(slow, "PUT", "/%s/timed?%s" % (container, sas), b"x" * 4096)
            assert status == 201
            assert time.monotonic() - start >= DELAY


def test_an_unknown_call_is_an_error_not_a_silent_success(sink):
    container = sink.create_container()
    before = sink.stats()["unsupported"]
    status, code = raw_request(sink, "PUT", "/%s/b?comp=block&blockid=AAAA&%s" % (container, sink.make_sas(container)),
                               b"x")
    assert (status, code) == (400, "UnsupportedBySink")
    assert sink.stats()["unsupported"] == before + 1


def raw_request(sink, method, path, body=b""):
    """One bare request under the sink's account; returns (status, x-ms-error-code)."""
    parts = urllib.parse.urlsplit(sink.endpoint)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, parts.path + path, body=body,
                     headers={"x-ms-blob-type": "BlockBlob", "x-ms-version": "2025-01-05"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("x-ms-error-code", "")
    finally:
        conn.close()
