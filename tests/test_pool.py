"""The local process pool (clfsload.execute.pool, procpool): its shutdown, the relay of the workers' reports, several units per process."""

import logging
import os
import threading
import time
from concurrent.futures import CancelledError, wait
from concurrent.futures.process import BrokenProcessPool

import pytest

from clfsload.execute import pool as pool_module
from clfsload.execute.pool import UnitPool, WorkerConfig
from clfsload.execute.procpool import RemoteTraceback, ThreadedProcessPool
from clfsload.settings import Switches
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


# -- the pool under UnitPool: several units at once per process (clfsload.execute.procpool) --


def _procs(processes=1, slots=2, **kwargs):
    return ThreadedProcessPool(processes, slots, pool_module.start_forkserver(), **kwargs)


def test_a_result_comes_back_while_a_slower_sibling_runs():
    procs = _procs(slots=2)
    slow = procs.submit(time.sleep, 30)
    quick = procs.submit(os.getpid)
    assert quick.result(timeout=30) != os.getpid()  # ran in the worker, beside the slow one
    assert not slow.done()
    os.kill(quick.result(), 9)  # ends the slow one the quick way
    with pytest.raises(BrokenProcessPool):
        slow.result(timeout=30)
    procs.shutdown()


def test_one_slot_runs_one_call_at_a_time():
    procs = _procs(slots=1)
    first = procs.submit(time.sleep, 1)
    second = procs.submit(os.getpid)
    done, _ = wait([first, second], return_when="FIRST_COMPLETED")
    assert first in done
    second.result(timeout=30)
    procs.shutdown()


def test_a_worker_that_dies_breaks_the_pool():
    procs = _procs(processes=2, slots=2)
    waiting = [procs.submit(time.sleep, 30) for _ in range(3)]  # three of the four slots
    dying = procs.submit(os._exit, 3)
    try:  # queued behind them, unless the death was already seen: then submit refuses
        waiting += [procs.submit(time.sleep, 30) for _ in range(2)]
    except BrokenProcessPool:
        pass
    for future in waiting + [dying]:
        with pytest.raises(BrokenProcessPool, match="terminated abruptly"):
            future.result(timeout=30)
    with pytest.raises(BrokenProcessPool):
        procs.submit(os.getpid)
    procs.shutdown(cancel_futures=True)  # returns: the other worker was stopped too


def test_shutdown_with_cancel_drops_the_queued_calls_and_ends_the_running():
    procs = _procs(slots=1)
    running = procs.submit(time.sleep, 60)  # a big unit a stopping caller does not wait for
    queued = [procs.submit(os.getpid) for _ in range(3)]
    time.sleep(0.2)
    started = time.monotonic()
    procs.shutdown(cancel_futures=True)
    assert time.monotonic() - started < 30
    with pytest.raises(BrokenProcessPool):
        running.result(timeout=0)
    for future in queued:
        with pytest.raises(CancelledError):
            future.result(timeout=0)


class _Unreadable:
    """Pickles in the parent; unpickling it in the worker raises (int('not a number'))."""

    def __reduce__(self):
        return (int, ("not a number",))


def test_a_call_the_worker_cannot_read_breaks_the_pool_instead_of_hanging():
    procs = _procs(slots=2)
    future = procs.submit(id, _Unreadable())
    with pytest.raises(BrokenProcessPool):
        future.result(timeout=30)
    procs.shutdown(cancel_futures=True)


def test_an_exception_comes_back_with_its_remote_traceback_and_the_worker_lives_on():
    procs = _procs(slots=2)
    with pytest.raises(FileNotFoundError) as caught:
        procs.submit(os.stat, "/nonexistent/clfsload").result(timeout=30)
    assert isinstance(caught.value.__cause__, RemoteTraceback)
    assert procs.submit(os.getpid).result(timeout=30) > 0
    procs.shutdown()


def test_a_failed_initializer_fails_the_calls_with_its_error():
    procs = _procs(slots=2, initializer=os.chdir, initargs=("/nonexistent/clfsload",))
    with pytest.raises(FileNotFoundError):
        procs.submit(os.getpid).result(timeout=30)  # the call's future, or the submit once the pool is broken
    with pytest.raises(FileNotFoundError):
        procs.submit(os.getpid).result(timeout=30)
    procs.shutdown(cancel_futures=True)


def test_each_unit_thread_has_its_own_runner_on_the_shared_uploader(tmp_path, monkeypatch):
    params = RunParams(containerid=5, fsid=6, secret=b"\0" * 16, compress=False, preserve_hardlinks=False)
    worker = WorkerConfig("file:" + str(tmp_path / "out"), "c", Credential.none(), params, 4)
    shared = object()
    monkeypatch.setattr(pool_module, "_config", worker)
    monkeypatch.setattr(pool_module, "_uploader", shared)
    runners = []

    def take():
        runners.append(pool_module._thread_runner())
        runners.append(pool_module._thread_runner())

    threads = [threading.Thread(target=take) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert runners[0] is runners[1] and runners[2] is runners[3]  # one per thread, kept
    assert runners[0] is not runners[2]
    assert all(runner.uploader is shared for runner in runners)


def test_capacity_grows_with_the_unit_threads(tmp_path):
    params = RunParams(containerid=5, fsid=6, secret=b"\0" * 16, compress=False, preserve_hardlinks=False)
    (tmp_path / "out").mkdir()
    for threads, capacity in ((None, 2 * (1 + 3)), (1, 8), (6, 18)):  # None: a local folder from a fast source
        config = WorkerConfig("file:" + str(tmp_path / "out"), "c", Credential.none(), params, 4,
                              Switches(unit_threads=threads))
        unit_pool = UnitPool(config, 2)
        assert (unit_pool.unit_threads, unit_pool.capacity) == (threads or 1, capacity)
        unit_pool.shutdown()


def test_units_run_at_once_where_they_wait_and_one_at_a_time_where_nothing_does(tmp_path):
    fast = Switches()
    assert pool_module.unit_threads(fast, waits=True) == pool_module.DEFAULT_UNIT_THREADS
    assert pool_module.unit_threads(fast, waits=False) == 1
    assert pool_module.unit_threads(Switches(unit_threads=3), waits=False) == 3
    # a local folder from a SOURCE judged slow: units wait on the source, several at once
    params = RunParams(containerid=5, fsid=6, secret=b"\0" * 16, compress=False, preserve_hardlinks=False,
                       source_slow=True)
    (tmp_path / "out").mkdir()
    unit_pool = UnitPool(WorkerConfig("file:" + str(tmp_path / "out"), "c", Credential.none(), params, 4), 2)
    assert unit_pool.unit_threads == pool_module.DEFAULT_UNIT_THREADS
    unit_pool.shutdown()


def test_a_source_a_round_trip_away_is_slow_and_tmpfs_or_a_local_disk_is_not(tmp_path):
    from bench.fusefs.mount import LatencyFS, fuse_available

    for i in range(20):
        (tmp_path / ("f%d" % i)).write_bytes(b"x")
    assert not pool_module.source_is_slow(str(tmp_path))
    assert not pool_module.source_is_slow(str(tmp_path / "missing"))
    assert not pool_module.source_is_slow(None)
    why = fuse_available()
    if why:
        pytest.skip(why)
    params = RunParams(containerid=5, fsid=6, secret=b"\0" * 16, compress=False, preserve_hardlinks=False)
    config = WorkerConfig("file:" + str(tmp_path), "c", Credential.none(), params, 4)
    assert pool_module.with_source_judged(config, str(tmp_path)) is config  # fast: as it was
    with LatencyFS(tmp_path, delay_us=2000, cache=False) as fs:
        assert pool_module.source_is_slow(str(fs.mountpoint))
        # the workers' pipelines read big files ahead from the first read, two ranges at a time
        assert pool_module.with_source_judged(config, str(fs.mountpoint)).params.source_slow


@pytest.mark.parametrize("depth, asked, threads, pipeline", [
    (32, 8, 8, 25), (32, 4, 4, 29), (0, 8, 8, 57), (8, 8, 2, 7), (2, 4, 1, 2), (1, 4, 1, 1), (8, 1, 1, 8)])
def test_the_unit_threads_share_the_source_cap(tmp_path, depth, asked, threads, pipeline):
    """Each unit thread runs source operations of its own: the pipeline gets what they leave of the cap."""
    params = RunParams(containerid=5, fsid=6, secret=b"\0" * 16, compress=False, preserve_hardlinks=False,
                       source_concurrency=depth)
    config = WorkerConfig("file:" + str(tmp_path), "c", Credential.none(), params, 4)
    shared, got = pool_module.with_unit_threads(config, asked)
    assert (got, shared.params.source_concurrency) == (threads, pipeline)
    assert got + shared.params.source_concurrency - 1 <= (depth or 64)


def test_the_slow_source_probe_stops_at_a_majority_and_decides_as_the_median(tmp_path, monkeypatch):
    """Every pattern of fast and slow lstats: the median's answer, from at most a majority of round trips."""
    import itertools

    for i in range(8):
        (tmp_path / ("f%d" % i)).write_bytes(b"x")
    clock = [0.0]
    monkeypatch.setattr(pool_module.time, "monotonic", lambda: clock[0])
    threshold = pool_module.source_reads.AHEAD_LATENCY
    for pattern in itertools.product((False, True), repeat=8):
        calls = []

        def lstat(path, pattern=pattern, calls=calls):
            clock[0] += 2 * threshold if pattern[len(calls)] else threshold / 10
            calls.append(path)

        monkeypatch.setattr(pool_module.os, "lstat", lstat)
        samples = sorted([0.0] + [2 * threshold if slow else threshold / 10 for slow in pattern])
        assert pool_module.source_is_slow(str(tmp_path)) == (samples[len(samples) // 2] > threshold), pattern

        # no round trip after one side had its majority of the 9 samples (the listing is one)
        def decided(k, pattern=pattern):
            seen = [False] + list(pattern[:k])
            return max(sum(seen), len(seen) - sum(seen)) >= 5

        k = len(calls)
        assert (decided(k) or k == 8) and not decided(k - 1), (pattern, k)
