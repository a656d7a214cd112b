"""The run-time switches (clfsload.settings.Switches): read once at the edge, then passed down.

The environment is read by the CLI (clfsload/cli/) and the library API
(clfsload/api.py) only, into Switches; the engine, the local pool's worker
processes, the Dask workers, the uploaders and the retry policy get the
values from there, never from os.environ.
"""

import ast
import asyncio
import dataclasses
import logging
import pickle
from pathlib import Path

import pytest

import clfsload
from clfsload.cli.main import build_parser, settings_from
from clfsload.driver import engine
from clfsload.execute import dask_worker, pool
from clfsload.settings import SWITCHES, WORKER_SIDE, Settings, Switches, history_path
from clfsload.targets.credentials import Credential
from clfsload.targets.retry import RetrySettings
from clfsload.work.units import BATCH_ENTRIES, RANGE_SEGMENTS, RunParams

PACKAGE = Path(clfsload.__file__).parent
#: where the environment may be read: the edge
EDGE = ("cli/", "api.py")
#: the documented exceptions, each with a comment where it reads
EXCEPTIONS = {
    "crashpoints.py": "test fault injection, armed in the environment of child processes",
    "_native/_compat.py": "the twin selector (CLFSLOAD_NO_EXTENSIONS), decided at import time",
    "execute/dask_worker.py": "a Dask worker's own environment: its edge for the worker-side switches",
}
#: every variable Switches reads, set to a value unlike its default
ENVIRON = {
    "CLFSLOAD_BATCH_ENTRIES": "7",
    "CLFSLOAD_RANGE_SEGMENTS": "0",
    "CLFSLOAD_MAX_IN_FLIGHT": "5",
    "CLFSLOAD_UNIT_THREADS": "3",
    "CLFSLOAD_NO_UVLOOP": "1",
    "CLFSLOAD_NO_PACING": "1",
    "CLFSLOAD_TEST_RETRY": "max_attempts=3,read_timeout=2",
    "CLFSLOAD_DASK_WAIT": "60",
    "CLFSLOAD_DASK_TIMEOUT": "2",
    "CLFSLOAD_HISTORY": "/tmp/h.json",
}
AZURE = "http://127.0.0.1:9/devstoreaccount1"  # never reached: opening a target makes no request
SAS = Credential.sas("sv=2022-11-02&sr=c&sp=racwdl&sig=c2lnbmF0dXJl")


def _environment_reads(path: Path):
    """Line numbers where ``path`` reads the environment (os.environ, os.environb, os.getenv, or those imported)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {"environ", "environb", "getenv", "getenvb"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in names and isinstance(node.value, ast.Name) \
                and node.value.id == "os":
            found.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and any(a.name in names for a in node.names):
            found.append(node.lineno)
    return found


def test_nothing_below_the_edge_reads_the_environment():
    readers = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        lines = _environment_reads(path)
        if lines and not rel.startswith(EDGE):
            readers[rel] = lines
    assert set(readers) == set(EXCEPTIONS), "the environment read below the edge: %s" % readers
    for rel, lines in readers.items():  # each exception says why, on the line before its first read
        source = (PACKAGE / rel).read_text(encoding="utf-8").splitlines()
        first = min(lines)
        assert source[first - 2].strip().startswith("#"), (rel, first)
    for path in PACKAGE.rglob("*.pyx"):
        assert "environ" not in path.read_text(encoding="utf-8") and "getenv" not in path.read_text(encoding="utf-8")


def test_switches_from_an_environ_mapping():
    assert Switches.from_environ({}) == Switches()
    switches = Switches.from_environ(ENVIRON)
    assert (switches.batch_entries, switches.range_segments, switches.max_in_flight) == (7, 0, 5)
    assert switches.unit_threads == 3
    assert switches.no_uvloop and switches.no_pacing
    assert switches.retry == RetrySettings(max_attempts=3, read_timeout=2.0)
    assert (switches.dask_wait_s, switches.dask_timeout_s) == (60.0, 2.0)
    assert switches.history == "/tmp/h.json"
    assert switches.given == set(ENVIRON)
    assert {name for name, _, _ in SWITCHES} == set(ENVIRON)
    # not a count, or 0 requests in flight: the default, as before
    odd = Switches.from_environ({"CLFSLOAD_BATCH_ENTRIES": "x", "CLFSLOAD_RANGE_SEGMENTS": "²",
                                 "CLFSLOAD_MAX_IN_FLIGHT": "0", "CLFSLOAD_NO_PACING": "0",
                                 "CLFSLOAD_UNIT_THREADS": "0"})
    assert (odd.batch_entries, odd.range_segments, odd.max_in_flight, odd.no_pacing) == (None, None, None, False)
    assert odd.unit_threads is None
    assert history_path({"XDG_STATE_HOME": "/state"}) == "/state/clfsload/history.json"


def test_malformed_values_fail_where_they_are_used_with_the_same_message():
    bad = Switches.from_environ({"CLFSLOAD_TEST_RETRY": "sig=abc", "CLFSLOAD_DASK_WAIT": "soon"})
    assert bad.target_options(local=True) is None  # a local folder takes no retry settings: no error
    with pytest.raises(ValueError, match="CLFSLOAD_TEST_RETRY: unknown retry setting 'sig'"):
        bad.target_options(local=False)
    with pytest.raises(ValueError, match="could not convert string to float: 'soon'"):
        bad.dask_wait_s


def test_the_cli_and_the_api_read_the_switches(monkeypatch):
    args = build_parser().parse_args(["--new", "/s", "/src", "file:/out", "c", "-"])
    settings = settings_from(args, logging.getLogger("t"), environ=ENVIRON)
    assert settings.switches == Switches.from_environ(ENVIRON)
    seen = []
    monkeypatch.setattr("clfsload.api.run_load", lambda s, **kw: seen.append(s) or engine.LoadResult())
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    clfsload.load("/s", "/src", "file:/out", "c", new=True)
    assert seen[0].switches == Switches.from_environ(ENVIRON)


class _State:
    """The few stored values Loader.params reads."""

    values = {"containerid": "5", "fsid": "6", "id_secret": "00" * 16, "compression": "LZ4", "preserve_hardlinks": "0",
              "bucket_uuid": "0" * 32}

    def get(self, key, default=None):
        return self.values.get(key, default)


def test_the_engine_takes_batch_and_range_sizes_from_the_switches(monkeypatch):
    monkeypatch.setenv("CLFSLOAD_BATCH_ENTRIES", "99")  # not read below the edge
    settings = Settings("/s", "/src", "file:/out", "c", Credential.none(), switches=Switches.from_environ(ENVIRON))
    loader = engine.Loader(settings)
    loader.state = _State()
    params = loader.params()
    assert (params.batch_entries, params.range_segments) == (7, 0)
    loader.settings = dataclasses.replace(settings, switches=Switches())
    params = loader.params()
    assert (params.batch_entries, params.range_segments) == (BATCH_ENTRIES, RANGE_SEGMENTS)


def _config(switches):
    params = RunParams(containerid=5, fsid=6, secret=b"\0" * 16, compress=False, preserve_hardlinks=False)
    return pool.WorkerConfig(AZURE, "cont1", SAS, params, 8, switches)


def test_the_switches_reach_the_pool_uploader_and_retry_policy(monkeypatch):
    for name in ENVIRON:  # the opposite in the environment: the worker must not read it
        monkeypatch.setenv(name, "1" if name != "CLFSLOAD_TEST_RETRY" else "max_attempts=9")
    monkeypatch.setenv("CLFSLOAD_MAX_IN_FLIGHT", "99")
    config = _config(Switches.from_environ(ENVIRON))
    config = pickle.loads(pickle.dumps(config))  # as it reaches a worker process or a Dask worker
    worker = pool.open_runner(config)
    try:
        uploader = worker.uploader
        assert uploader._max_in_flight == 5
        assert not uploader.pacer.enabled
        assert type(uploader._loop).__module__.startswith("asyncio")
        assert uploader.target._core.options.retry == RetrySettings(max_attempts=3, read_timeout=2.0)
    finally:
        worker.uploader.close()
    for name in ENVIRON:
        monkeypatch.delenv(name)
    worker = pool.open_runner(_config(Switches()))
    try:
        uploader = worker.uploader
        assert uploader._max_in_flight == pool.uploads_in_flight(8) == 64
        assert uploader.pacer.enabled
        assert uploader.target._core.options.retry == RetrySettings()
    finally:
        worker.uploader.close()


def test_a_workers_connections_follow_its_requests_in_flight():
    """Issue 22: the wire pool's 64 connections capped a worker whatever its in-flight setting."""
    for switches, threads, expected in ((Switches(max_in_flight=200), 8, 200), (Switches(), 40, 160),
                                        (Switches(), 8, 64)):
        config = pool.WorkerConfig(AZURE, "cont1", SAS, _config(Switches()).params, threads, switches)
        worker = pool.open_runner(config)
        try:
            assert worker.uploader._max_in_flight == expected
            assert worker.uploader.target._core.options.max_connections == expected
        finally:
            worker.uploader.close()


def test_uploads_in_flight_take_the_switch():
    assert pool.uploads_in_flight(8, 5) == 5
    assert pool.uploads_in_flight(8, None) == 64
    assert pool.uploads_in_flight(40, 0) == 160


def test_a_dask_workers_own_environment_wins_for_the_worker_side_switches():
    driver = _config(Switches.from_environ({"CLFSLOAD_MAX_IN_FLIGHT": "5", "CLFSLOAD_TEST_RETRY": "max_attempts=3"}))
    assert dask_worker.with_own_switches(driver, {}) is driver  # nothing set on the worker: the driver's values
    own = dask_worker.with_own_switches(driver, {"CLFSLOAD_MAX_IN_FLIGHT": "2", "CLFSLOAD_NO_PACING": "1",
                                                 "CLFSLOAD_BATCH_ENTRIES": "3", "CLFSLOAD_DASK_WAIT": "1"})
    assert (own.switches.max_in_flight, own.switches.no_pacing, own.switches.test_retry) == (2, True, "max_attempts=3")
    # the driver's side stays the driver's: batches are planned there, the Dask waits are its own
    assert (own.switches.batch_entries, own.switches.dask_wait) == (None, "120")
    assert set(WORKER_SIDE) == {"max_in_flight", "no_uvloop", "no_pacing", "test_retry"}


def test_the_uploader_loop_follows_the_switch():
    uvloop = pytest.importorskip("uvloop")

    class Target:
        async def close(self):
            pass

    async def opener():
        return Target()

    from clfsload.work.upload import Uploader

    for use, kind in ((True, uvloop.Loop), (False, asyncio.BaseEventLoop)):
        uploader = Uploader(opener, compress=False, uvloop=use)
        try:
            assert isinstance(uploader._loop, kind)
        finally:
            uploader.close()

