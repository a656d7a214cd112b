"""The local process pool (clfsload.execute.pool): its shutdown, and the relay of the workers' reports."""

import logging
import threading

from clfsload.execute.pool import UnitPool, WorkerConfig
from clfsload.targets.credentials import Credential
from clfsload.work.units import RunParams


def _pool(tmp_path, processes=1):
    params = RunParams(containerid=5, fsid=6, secret=b"\0" * 16, compress=False, preserve_hardlinks=False)
    (tmp_path / "out").mkdir()
    config = WorkerConfig("file:" + str(tmp_path / "out"), "c", Credential.none(), params, 4)
    return UnitPool(config, processes)


def _shutdown_within(pool, seconds):
    done = threading.Event()

    def stop():
        pool.shutdown()
        done.set()

    threading.Thread(target=stop, daemon=True).start()
    return done.wait(seconds)


def test_a_report_reaches_the_driver_log_and_shutdown_returns(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="clfsload")
    pool = _pool(tmp_path)
    pool._reports.put(("stuck", 1234, "'/src/f': source operation read has not returned for 1 s"))
    for _ in range(50):
        if any("has not returned" in r.getMessage() for r in caplog.records):
            break
        threading.Event().wait(0.1)
    assert any("has not returned" in r.getMessage() for r in caplog.records)
    assert _shutdown_within(pool, 30)


def test_shutdown_returns_though_a_dead_worker_holds_the_report_queue(tmp_path):
    """A worker killed mid-report leaves the queue's write lock taken for good: shutdown must not wait on it."""
    pool = _pool(tmp_path)
    assert pool._reports._wlock.acquire(timeout=5)  # as a worker killed inside put() leaves it
    assert _shutdown_within(pool, 30)
