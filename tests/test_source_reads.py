"""The read pipeline's own rules (clfsload.work.source_reads), no FUSE needed: what a walk leaves behind, take()."""

import logging
import sys
import threading
import time

import pytest

from clfsload.driver.dryrun import count_tree
from clfsload.work import source_reads
from clfsload.work.source_reads import OrderedAhead, SourceReads, walk_reads


def _source_threads():
    """The pipeline's threads alive now (other tests' pools for life among them: compare with a snapshot)."""
    return {t for t in threading.enumerate() if t.name.startswith("clfsload-source")}


def _until_gone(before, deadline: float = 5.0):
    """The pipeline's threads started since the snapshot ``before`` still alive after at most ``deadline`` s."""
    end = time.monotonic() + deadline
    while _source_threads() - before and time.monotonic() < end:
        time.sleep(0.01)
    return _source_threads() - before


@pytest.fixture
def slow(monkeypatch):
    """Every operation issued ahead, whatever its latency (so the pool starts on tmpfs)."""
    monkeypatch.setattr(source_reads, "AHEAD_LATENCY", -1.0)


def test_a_walk_ends_its_threads_and_puts_the_process_settings_back(slow) -> None:
    """The dry run and verify in a library caller's process: nothing of the pool outlives the walk."""
    threads = _source_threads()
    before = sys.getswitchinterval()  # lowered already if another test's pool runs for life here
    with walk_reads(8, 60) as reads:
        assert [f.result() for f in reads.map("lstat", lambda x: x * 2, range(50))] == list(range(0, 100, 2))
        reads.call("lstat", b"/", time.sleep, 0)  # the hang watch starts with the first operation
        assert len(_source_threads() - threads) == 8  # 7 pool threads and the watch
        assert sys.getswitchinterval() == min(before, source_reads.SWITCH_INTERVAL)
        assert source_reads.stuck_operations() == 0  # counted with the rest while it runs
    assert sys.getswitchinterval() == before
    assert not _until_gone(threads)


def test_a_dry_run_count_leaves_no_thread(tmp_path, slow) -> None:
    threads = _source_threads()
    for i in range(30):
        (tmp_path / ("f%d" % i)).write_bytes(b"x" * i)
    (tmp_path / "d").mkdir()
    assert count_tree(str(tmp_path), False, logging.getLogger("test")) == (32, sum(range(30)), 0)
    assert not _until_gone(threads)


def test_take_refuses_a_key_it_was_not_given_and_drops_nothing(slow) -> None:
    """A key never given (or passed already) would have flushed every read ahead of the unit."""
    reads = SourceReads(4, timeout=60)
    items = [(k, "open", lambda k=k: k.upper(), (), 0) for k in ["a", "b", "c", "d"]]
    ahead = OrderedAhead(reads, items)
    try:
        assert ahead.take("a") is None  # the first one: the consumer runs it; the rest go ahead from here
        with pytest.raises(KeyError):
            ahead.take("zz")
        with pytest.raises(KeyError):
            ahead.take("a")  # taken already
        assert ahead.take("c").result() == "C"  # b dropped: passed over, as before
        with pytest.raises(KeyError):
            ahead.take("b")
        assert ahead.take("d").result() == "D"
        assert reads.ahead_bytes == 0
    finally:
        ahead.close()
        reads.shutdown()


def test_the_node_slots_cap_every_pool_that_shares_them() -> None:
    """Two pools (two worker processes) on one node's slots: together never more than the cap, each alone all of it."""
    import multiprocessing

    slots = source_reads.NodeSlots(multiprocessing.get_context("forkserver"), 4)
    pools = [SourceReads(2, timeout=60, slots=slots) for _ in range(2)]
    assert [reads.threads for reads in pools] == [3, 3]  # the node's cap, whatever the share
    now, peak = [0], [0]
    lock = threading.Lock()

    def op(_):
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.005)
        with lock:
            now[0] -= 1

    futures = [reads.submit("x", i, op, i) for i in range(20) for reads in pools]
    for i in range(5):
        for reads in pools:
            reads.call("y", i, op, i)
    for f in futures:
        f.result()
    assert peak[0] == 4
    peak[0] = 0
    futures = [pools[0].submit("x", i, op, i) for i in range(20)]
    pools[0].call("y", 0, op, 0)
    for f in futures:
        f.result()
    for reads in pools:
        reads.shutdown()
    assert peak[0] == 4  # one pool alone: the whole cap, not its share of 2


def test_a_process_on_the_node_slots_runs_twice_its_share_in_threads() -> None:
    """Up to the node's cap, at least 16: a node of many processes does not start cap - 1 threads in each."""
    import multiprocessing

    slots = source_reads.NodeSlots(multiprocessing.get_context("forkserver"), 64)
    assert SourceReads(32, timeout=60, slots=slots).threads == 63  # two processes: each may fill the cap
    assert SourceReads(8, timeout=60, slots=slots).threads == 15  # eight: 16 each
    assert SourceReads(1, timeout=60, slots=slots).threads == 15  # 64: 16 each, not 63
    assert SourceReads(1, timeout=60, slots=source_reads.NodeSlots(multiprocessing.get_context("forkserver"),
                                                                   4)).threads == 3
