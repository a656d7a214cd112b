"""The read pipeline (issue 19): depth the source sees, the cap, containers unchanged, hung operations.

Loads go through latencyfs (bench/fusefs), a FUSE passthrough that adds a
delay to every operation and counts the operations in flight. Not timing
tests: the depth is the peak the file system itself counted. Where
/dev/fuse is missing, the module is skipped with that one reason, as
tests/test_latencyfs.py is.
"""

import os
import threading
import time
from pathlib import Path

import pytest

from clfsload.api import load
from clfsload.clfs.canonical import canonical_form, diff_canonical
from clfsload.clfs.constants import FIRST_SEGMENT_BYTES
from clfsload.clfs.container import Container, FolderSource
from clfsload.work import source_reads
from clfsload.work.source_reads import AheadReader, HangWatch, SourceReads

from bench.fusefs.mount import LatencyFS, fuse_available  # bench/ from the checkout (pytest pythonpath)

_WHY_NOT = fuse_available()
if _WHY_NOT:
    pytest.skip(_WHY_NOT, allow_module_level=True)

#: containers of two loads of one tree differ only in these (another containerid, another run)
MASK = frozenset({"fileid", "ctime", "compression"})


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """4 directories of 40 small files, a symlink, a file of a few segments' worth of reads."""
    root = tmp_path / "src"
    for d in range(4):
        sub = root / ("d%d" % d)
        sub.mkdir(parents=True)
        for i in range(40):
            (sub / ("f%02d" % i)).write_bytes(b"%d.%d " % (d, i) * (50 + 37 * i))
        (sub / "link").symlink_to("f01")
    (root / "big").write_bytes(os.urandom(3 << 20) + b"tail")
    return root


def _load(src: Path, out: Path, state: Path, **kwargs):
    out.mkdir()
    result = load(str(state), str(src), "file:" + str(out), "c", None, new=True, **kwargs)
    assert result.ok, (result.message, [p.line() for p in result.problem_list])
    return Container(FolderSource(str(out / "c")))


def test_the_source_sees_the_configured_depth(tree: Path, tmp_path: Path) -> None:
    with LatencyFS(tree, delay_us=2000, cache=False) as fs:
        _load(fs.mountpoint, tmp_path / "out", tmp_path / "state", source_concurrency=16, processes=2)
        peak = fs.stats()["peak"]
    # 8 per worker process, both busy: the file system saw (close to) 16 at once,
    # never the one or two of a walk that reads entry after entry
    assert peak >= 13, "the source saw at most %d operations in flight" % peak


def test_one_worker_process_may_use_the_whole_node_cap(tmp_path: Path) -> None:
    """One directory: one unit, in one of the two worker processes; the other's share of the cap is its."""
    root = tmp_path / "one"
    root.mkdir()
    for i in range(200):
        (root / ("f%03d" % i)).write_bytes(b"%d " % i * (20 + i))
    with LatencyFS(root, delay_us=2000, cache=False) as fs:
        _load(fs.mountpoint, tmp_path / "out", tmp_path / "state", source_concurrency=16, processes=2)
        peak = fs.stats()["peak"]
    # split in two shares of 8, the process loading the directory kept at most 8 (and a
    # release) in flight; the node's 16 slots let it keep all of them busy
    assert peak >= 13, "the source saw at most %d operations in flight" % peak


def test_a_cap_of_one_keeps_one_operation_in_flight(tree: Path, tmp_path: Path) -> None:
    with LatencyFS(tree, delay_us=500, cache=False) as fs:
        _load(fs.mountpoint, tmp_path / "out", tmp_path / "state", source_concurrency=1, processes=2)
        stats = fs.stats()
    # the kernel sends a file's RELEASE after close() returned, so one may overlap the next operation
    assert stats["peak"] <= 2, stats


def test_containers_are_the_same_whatever_the_depth(tree: Path, tmp_path: Path) -> None:
    forms = []
    with LatencyFS(tree, delay_us=200, cache=False) as fs:
        for depth in (1, 64):
            container = _load(fs.mountpoint, tmp_path / ("out%d" % depth), tmp_path / ("state%d" % depth),
                              source_concurrency=depth)
            forms.append(canonical_form(container, mask=MASK))
    assert diff_canonical(forms[0], forms[1]) == []


def test_a_hung_read_is_reported_and_the_load_waits_for_it(tree: Path, tmp_path: Path, caplog) -> None:
    caplog.set_level("WARNING", logger="clfsload")
    with LatencyFS(tree, delay_us=0, cache=False) as fs:
        fs.hold("d2/f07", ops=("read",))
        done = threading.Event()
        outcome = {}

        def run() -> None:
            try:
                outcome["container"] = _load(fs.mountpoint, tmp_path / "out", tmp_path / "state",
                                             source_concurrency=8, source_timeout=0.3, processes=0)
            finally:
                done.set()

        loader = threading.Thread(target=run)
        loader.start()
        assert not done.wait(2.5), "the load ended while a read was held"
        fs.release()
        loader.join(60)
    assert done.is_set()
    lines = [r.getMessage() for r in caplog.records if "has not returned" in r.getMessage()]
    assert lines and all("d2/f07" in line and "read" in line for line in lines), lines
    assert 2 <= len(lines) <= 5, lines  # repeated, at a slowing rate (0.3, 0.6, 1.2, 2.4 s ...)
    assert b"f07" in outcome["container"].listdir(b"d2")  # stored once its read returned


# --- the pipeline's parts, no FUSE needed --------------------------------------------------


def test_hang_watch_reports_at_a_slowing_rate_and_counts_stuck_operations() -> None:
    seen = []
    watch = HangWatch(10.0, lambda path, op, waited: seen.append((path, op, round(waited))))
    token = watch.enter("read", b"/x", time.monotonic())
    start = watch._ops[token].start
    for t in range(0, 100):
        watch.check(start + t)
    assert seen == [(b"/x", "read", 10), (b"/x", "read", 20), (b"/x", "read", 40), (b"/x", "read", 80)]
    assert watch.stuck() == 0  # the real clock: not 10 s yet
    watch.leave(token)
    assert watch.check(start + 1000) == []


def test_fast_operations_run_on_the_callers_thread_slow_ones_ahead() -> None:
    reads = SourceReads(8, timeout=60)
    here = threading.get_ident()
    threads = [f.result() for f in reads.map("fast", lambda _: threading.get_ident(), range(5))]
    assert threads == [here] * 5
    threads = [f.result() for f in reads.map("slow", lambda _: (time.sleep(0.002), threading.get_ident())[1],
                                             range(40))]
    assert threads[0] == here and set(threads[15:]).isdisjoint({here})  # ahead once ~10 were slow
    reads.shutdown()


@pytest.fixture(params=["ahead", "inline"])
def ahead(request, monkeypatch):
    """Both ways: reads issued ahead whatever their latency, and only when worth it (never, on tmpfs)."""
    if request.param == "ahead":
        monkeypatch.setattr(source_reads, "AHEAD_LATENCY", -1.0)
    return request.param


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, (5 << 20) + 3])
def test_ahead_reader_reads_like_a_stream(tmp_path: Path, size: int, ahead) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    reads = SourceReads(4, budget=2 << 20, timeout=60)
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = AheadReader(reads, fd, size)
        got = []
        for want in [10, 3 << 20, 7, 1 << 20, 1 << 30]:
            got.append(reader.read(want))
        assert b"".join(got) == data[:len(b"".join(got))]
        rest = reader.read()
        assert b"".join(got) + rest == data
        assert reader.read(5) == b""
        reader.seek(0)
        assert reader.read() == data
        reader.close()
        assert reads.ahead_bytes == 0
    finally:
        os.close(fd)
        reads.shutdown()


def test_ahead_reader_goes_on_past_a_file_that_grew(tmp_path: Path, ahead) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a" * 3000)
    reads = SourceReads(4, timeout=60)
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = AheadReader(reads, fd, 1000)  # the size known when it was made: smaller than the file now
        out = b""
        while True:
            part = reader.read(700)
            if not part:
                break
            out += part
        assert out == b"a" * 3000
        reader.close()
    finally:
        os.close(fd)
        reads.shutdown()


@pytest.mark.parametrize("eager", [False, True])
def test_a_reader_of_a_source_judged_slow_reads_ahead_from_its_first_read(tmp_path: Path, eager: bool) -> None:
    # tmpfs answers fast, so the estimate of reads never asks for reads ahead; a source the
    # probe at the start judged slow reads ahead anyway (its page-cache hits keep that estimate low)
    size = 6 << 20
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    reads = SourceReads(4, budget=8 << 20, timeout=60)
    reads.read_eagerly = eager
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = AheadReader(reads, fd, size)
        first = reader.read(1 << 20)
        assert first == data[:1 << 20]
        assert (reads.ahead_bytes > 0) == eager  # the next pieces already asked for, or not
        assert first + reader.read() == data
        reader.close()
        assert reads.ahead_bytes == 0
    finally:
        os.close(fd)
        reads.shutdown()


def test_the_cap_holds_for_operations_of_the_caller_and_of_the_pool() -> None:
    """depth - 1 pool threads, and the caller: never more than depth at once."""
    reads = SourceReads(3, timeout=60)
    now, peak = [0], [0]
    lock = threading.Lock()

    def op(_):
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.005)
        with lock:
            now[0] -= 1

    futures = [reads.submit("x", i, op, i) for i in range(30)]
    for i in range(10):
        reads.call("y", i, op, i)
    for f in futures:
        f.result()
    reads.shutdown()
    assert peak[0] == 3


@pytest.mark.parametrize("delay_us, says", [
    (0, "has not returned"),  # a fast source: the read is the consumer's own, or a Python pool thread's
    (1000, "open+read has not returned"),  # a slow one: a run's (with the compiled twin)
])
def test_a_hung_read_in_a_worker_process_is_reported_by_the_driver(tree: Path, tmp_path: Path, caplog,
                                                                    delay_us: int, says: str) -> None:
    caplog.set_level("INFO", logger="clfsload")
    from clfsload.driver.engine import run_load
    from clfsload.settings import Settings, Switches
    from clfsload.targets.credentials import Credential

    with LatencyFS(tree, delay_us=delay_us, cache=False) as fs:
        fs.hold("d1/f03", ops=("read",))
        threading.Timer(2.0, fs.release).start()
        (tmp_path / "out").mkdir()
        settings = Settings(state_dir=str(tmp_path / "state"), source=str(fs.mountpoint),
                            account="file:" + str(tmp_path / "out"), container="c", credential=Credential.none(),
                            new=True, processes=2, source_timeout=0.3, progress_interval=0.2, live_progress=False,
                            switches=Switches.from_environ(os.environ))  # the conftest's history file, not ~
        result = run_load(settings)
    assert result.ok, result.message
    messages = [r.getMessage() for r in caplog.records]
    assert any("d1/f03" in m and says in m for m in messages), messages
    assert any("stuck=1 source operations" in m for m in messages), messages


def test_through_fuse_the_compiled_chain_takes_its_first_fstat_without_a_round_trip(twins, tmp_path):
    """Through a FUSE file system without attribute caching: the same results, one GETATTR fewer per file.

    The compiled twin's first fstat is a statx(AT_STATX_DONT_SYNC): the
    attributes the open's lookup brought back. The second, after the read,
    still goes to the file system (the torn-read rule's re-check). Here, not
    with the other sourceio twin tests: those also run against an installed
    wheel, without bench/ (.ci/sdist-smoke).
    """
    py, c = twins("sourceio")
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"abc" * 1000)
    counts = {}
    with LatencyFS(src, delay_us=0, cache=False) as fs:
        path = os.fsencode(fs.mountpoint / "f")
        for name, twin in (("py", py), ("c", c)):
            before = fs.stats()["getattr"]
            fd, opened, data = twin.open_read(path, FIRST_SEGMENT_BYTES)
            counts[name] = fs.stats()["getattr"] - before
            assert (fd, data) == (-1, b"abc" * 1000)
            now = os.stat(fs.mountpoint / "f")  # the mount's device, the source's inode: the same stat
            assert type(opened) is os.stat_result and tuple(opened) == tuple(now)
            assert (opened.st_mtime_ns, opened.st_ctime_ns) == (now.st_mtime_ns, now.st_ctime_ns)
    assert counts["c"] == counts["py"] - 1, counts


# --- runs on threads that never take the GIL (the compiled sourceio.run_ahead) ----------------


def _slots_reads(depth: int, timeout: float = 60, on_stuck=None) -> SourceReads:
    """A worker process's pool on the node's slots, as the local pool gives one (here in this process)."""
    import multiprocessing

    from clfsload.work.source_reads import NodeSlots

    return SourceReads(depth, timeout=timeout, on_stuck=on_stuck,
                       slots=NodeSlots(multiprocessing.get_context("forkserver"), depth))


@pytest.fixture
def compiled_runs(twins):
    """The selected sourceio runs its runs in parallel (the compiled twin): a compiled-twin test.

    Through ``twins`` the test is marked like the other compiled-twin tests
    (deselected, not skipped, in the pure-Python pass of .ci/run).
    """
    from clfsload._native import sourceio

    twins("sourceio")
    assert sourceio.IMPLEMENTATION.RUNS_IN_PARALLEL, "the compiled sourceio twin is built but not selected"


def test_a_directorys_lstats_are_one_run_at_the_configured_depth(compiled_runs, tmp_path: Path) -> None:
    from clfsload.work.prefetch import lstat_all

    root = tmp_path / "many"
    root.mkdir()
    for i in range(120):
        (root / ("f%03d" % i)).write_bytes(b"x" * i)
    with LatencyFS(root, delay_us=2000, cache=False) as fs:
        reads = _slots_reads(12)
        paths = [os.fsencode(fs.mountpoint / ("f%03d" % i)) for i in range(120)] + [os.fsencode(fs.mountpoint / "gone")]
        for _ in range(40):  # the source is slow (the estimate rises by a quarter a call): runs from now on
            reads.call("lstat", paths[0], os.lstat, paths[0])
        run = reads.run_ahead("lstat", paths[:2])
        assert run is not None
        run.close()
        fs.reset()
        got = lstat_all(reads, paths)
        peak = fs.stats()["peak"]
        expected = [os.lstat(p) for p in paths[:-1]]
        reads.shutdown()
    assert [tuple(st) for st in got[:-1]] == [tuple(st) for st in expected]
    assert isinstance(got[-1], FileNotFoundError) and got[-1].filename == paths[-1]
    # the node's 12 slots all busy (the depth of the C threads, not of one consumer), never more
    assert 10 <= peak <= 12, "the source saw at most %d operations in flight" % peak


def test_a_hung_read_in_a_run_is_reported_and_taken_once_it_returns(compiled_runs, tmp_path: Path) -> None:
    from clfsload.clfs.constants import Ftype
    from clfsload.work.prefetch import EntriesAhead

    root = tmp_path / "files"
    root.mkdir()
    for i in range(30):
        (root / ("f%02d" % i)).write_bytes(b"%d " % i * 100)
    seen = []
    with LatencyFS(root, delay_us=1000, cache=False) as fs:
        reads = _slots_reads(8, timeout=0.3, on_stuck=lambda path, op, waited: seen.append((path, op)))
        paths = [os.fsencode(fs.mountpoint / ("f%02d" % i)) for i in range(30)]
        for _ in range(40):
            reads.call("lstat", paths[0], os.lstat, paths[0])
        fs.hold("f07", ops=("read",))
        taken = []
        with EntriesAhead(reads, [(p, Ftype.REG, 300) for p in paths]) as ahead:
            assert ahead._run is not None  # one run on the C threads, not futures of the Python pool
            consumer = threading.Thread(target=lambda: taken.extend(ahead.take(p).result().data for p in paths))
            consumer.start()
            time.sleep(1.0)
            stuck = reads.watch.stuck()
            fs.release()
            consumer.join(30)
        reads.shutdown()
    assert stuck == 1
    assert seen and all(path == paths[7] and op == "open+read" for path, op in seen), seen
    assert taken == [b"%d " % i * 100 for i in range(30)]


def test_an_inline_run_meeting_a_slow_source_goes_back_to_the_threads(compiled_runs, tmp_path: Path) -> None:
    """Started inline (the last run judged fast): its first operation is slow, so the rest run in parallel."""
    from clfsload._native import sourceio

    root = tmp_path / "d"
    root.mkdir()
    for i in range(64):
        (root / ("f%02d" % i)).write_bytes(b"x")
    with LatencyFS(root, delay_us=2000, cache=False) as fs:
        paths = [os.fsencode(fs.mountpoint / ("f%02d" % i)) for i in range(64)]
        fs.reset()
        run = sourceio.run_ahead("lstat", paths, 0, 16, None, 32, 8, 150e-6, True)
        assert run.inline()
        got = [run.take(i) for i in range(64)]
        peak = fs.stats()["peak"]
        inline = run.inline()
        run.close()
    assert [st.st_size for st in got] == [1] * 64
    assert not inline and peak >= 12, "peak %d, inline %s" % (peak, inline)


def test_a_consumer_passing_a_hung_item_takes_the_next_once_the_slot_frees(compiled_runs, tmp_path: Path) -> None:
    """Inline, a later item whose ring slot a passed, still running item holds: run once it ends, no hang.

    Window 3: items go three at a time, so item 8 starts on a pool thread (its
    read held) when items 6 and 7 have not ended; with them, eight have, all
    "fast", and the run goes inline. The consumer takes 0-7, passes 8-10 and
    takes 11, whose ring slot is 8's: item 11 must run (on the consumer, as
    no pool thread starts anything inline) once 8 returns.
    """
    from clfsload._native import sourceio

    root = tmp_path / "d"
    root.mkdir()
    for i in range(14):
        (root / ("f%02d" % i)).write_bytes(b"%02d" % i)
    with LatencyFS(root, delay_us=5000, cache=False) as fs:
        fs.hold("f08", ops=("read",))
        paths = [os.fsencode(fs.mountpoint / ("f%02d" % i)) for i in range(14)]
        run = sourceio.run_ahead("open+read", paths, FIRST_SEGMENT_BYTES, 4, None, 3, 8, 10.0, False)
        got = []

        def consume() -> None:
            got.extend(run.take(i)[2] for i in range(8))
            got.append(run.take(11)[2])

        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        consumer.join(3.0)
        assert len(got) == 8 and consumer.is_alive()  # waits for 8's ring slot
        assert run.inline() and [path for path, _ in run.in_flight()] == [paths[8]]
        fs.release()
        consumer.join(10.0)
        hung = consumer.is_alive()
        run.close()
    assert not hung, "the consumer still waits for item 11 after item 8 returned"
    assert got == [b"%02d" % i for i in range(8)] + [b"11"]


def test_an_item_still_running_when_its_run_is_closed_is_reported_until_it_returns(compiled_runs, tmp_path: Path) -> None:
    """A dropped operation still runs on its thread: the hang watch names it until it returns, then forgets the run."""
    from clfsload.clfs.constants import Ftype
    from clfsload.work.prefetch import EntriesAhead

    root = tmp_path / "files"
    root.mkdir()
    for i in range(12):
        (root / ("f%02d" % i)).write_bytes(b"%d" % i)
    seen = []
    with LatencyFS(root, delay_us=1000, cache=False) as fs:
        reads = _slots_reads(8, timeout=0.3, on_stuck=lambda path, op, waited: seen.append(path))
        reads.read_eagerly = True  # SOURCE judged slow: runs from the first directory
        paths = [os.fsencode(fs.mountpoint / ("f%02d" % i)) for i in range(12)]
        fs.hold("f05", ops=("read",))
        with EntriesAhead(reads, [(p, Ftype.REG, 1) for p in paths]) as ahead:
            assert ahead._run is not None
            assert [ahead.take(p).result().data for p in paths[:3]] == [b"0", b"1", b"2"]
            time.sleep(0.2)  # f05 started (its read held) before the run is closed
        time.sleep(1.0)
        stuck = reads.watch.stuck()
        fs.release()
        deadline = time.monotonic() + 10
        while reads.watch._runs and time.monotonic() < deadline:
            reads.watch.stuck()  # (what the watch thread does each tick) forgets a closed run once idle
            time.sleep(0.05)
        left = dict(reads.watch._runs)
        reads.shutdown()
    assert stuck == 1 and seen and set(seen) == {paths[5]}, (stuck, seen)
    assert left == {}
