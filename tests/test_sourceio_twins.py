"""The small-file chain of the read pipeline (``clfsload._native.sourceio``): both twins alike, and like the calls it replaces."""

import errno
import os
import stat
import time

import pytest

from clfsload.clfs.constants import FIRST_SEGMENT_BYTES
from clfsload.work.scan import open_for_reading

STAT_FIELDS = [name for name in dir(os.stat_result) if name.startswith("st_")]


def _same_stat(a: os.stat_result, b: os.stat_result) -> None:
    assert type(a) is os.stat_result and type(b) is os.stat_result
    assert tuple(a) == tuple(b)
    for name in STAT_FIELDS:  # the float times, the *_ns, blksize, blocks, rdev too
        assert getattr(a, name) == getattr(b, name), name
        assert type(getattr(a, name)) is type(getattr(b, name)), name


@pytest.mark.parametrize("size", [0, 1, 5000, FIRST_SEGMENT_BYTES - 1])
def test_small_file_read_whole_and_closed(impl, tmp_path, size):
    path = tmp_path / "f"
    content = os.urandom(size)
    path.write_bytes(content)
    fd, opened, data = impl("sourceio").open_read(os.fsencode(path), FIRST_SEGMENT_BYTES)
    assert (fd, data) == (-1, content)
    assert type(data) is bytes
    _same_stat(opened, os.stat(path))


@pytest.mark.parametrize("size", [FIRST_SEGMENT_BYTES, FIRST_SEGMENT_BYTES + 1, 3 << 20])
def test_larger_file_left_open_unread(impl, tmp_path, size):
    path = tmp_path / "f"
    content = os.urandom(size)
    path.write_bytes(content)
    fd, opened, data = impl("sourceio").open_read(os.fsencode(path), FIRST_SEGMENT_BYTES)
    try:
        assert data is None and fd >= 0
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # not read: only files below the limit are
        assert os.pread(fd, size, 0) == content
        flags = os.get_blocking(fd), os.get_inheritable(fd)
        assert flags == (False, False)  # O_NONBLOCK, O_CLOEXEC as open_for_reading opens
        _same_stat(opened, os.fstat(fd))
    finally:
        os.close(fd)


def test_same_open_as_scan(twins, tmp_path):
    py, c = twins("sourceio")
    assert (c.OPEN_FLAGS, c.NOATIME) == (py.OPEN_FLAGS, py.NOATIME)
    path = tmp_path / "f"
    path.write_bytes(b"x" * (FIRST_SEGMENT_BYTES + 10))
    fd, opened = open_for_reading(os.fsencode(path))
    os.close(fd)
    for twin in (py, c):
        fd, got, data = twin.open_read(os.fsencode(path), FIRST_SEGMENT_BYTES)
        os.close(fd)
        _same_stat(got, opened)


def _raised(twin, path: bytes):
    with pytest.raises(OSError) as info:
        twin.open_read(path, FIRST_SEGMENT_BYTES)
    exc = info.value
    return type(exc), exc.errno, exc.strerror, exc.filename, str(exc)


def test_errors_alike(twins, tmp_path):
    py, c = twins("sourceio")
    (tmp_path / "dir").mkdir()
    (tmp_path / "target").write_bytes(b"t")
    os.symlink(tmp_path / "target", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    cases = {
        "missing": (FileNotFoundError, errno.ENOENT),
        "link": (OSError, errno.ELOOP),  # never followed
        "dir": (OSError, errno.EINVAL),
        "fifo": (OSError, errno.EINVAL),  # not blocked in the open
    }
    for name, (cls, code) in cases.items():
        path = os.fsencode(tmp_path / name)
        expected = _raised(py, path)
        assert expected[:2] == (cls, code), name
        assert _raised(c, path) == expected, name
    assert "it became a directory since the scan" in _raised(c, os.fsencode(tmp_path / "dir"))[4]
    assert "it became a special file since the scan" in _raised(c, os.fsencode(tmp_path / "fifo"))[4]


def test_no_descriptor_left_open(impl, tmp_path):
    """Every path through the chain closes what it opened, except the open descriptor it returns."""
    before = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    if before is None:
        pytest.skip("no /proc/self/fd here")
    (tmp_path / "small").write_bytes(b"abc")
    (tmp_path / "dir").mkdir()
    sourceio = impl("sourceio")
    for _ in range(20):
        sourceio.open_read(os.fsencode(tmp_path / "small"), FIRST_SEGMENT_BYTES)
        with pytest.raises(OSError):
            sourceio.open_read(os.fsencode(tmp_path / "dir"), FIRST_SEGMENT_BYTES)
        with pytest.raises(FileNotFoundError):
            sourceio.open_read(os.fsencode(tmp_path / "missing"), FIRST_SEGMENT_BYTES)
    assert set(os.listdir("/proc/self/fd")) == before


def test_str_path_accepted(impl, tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    fd, _, data = impl("sourceio").open_read(str(tmp_path / "f"), FIRST_SEGMENT_BYTES)
    assert (fd, data) == (-1, b"abc")
    assert stat.S_ISREG(os.stat(tmp_path / "f").st_mode)


# --- run_ahead: runs of lstat and open+read ahead of an in-order consumer ----------------------


def _outcome(call):
    """("ok", value) or ("raised", class, errno, strerror, filename) of an OSError."""
    try:
        value = call()
    except OSError as exc:
        return ("raised", type(exc), exc.errno, exc.strerror, exc.filename)
    if isinstance(value, os.stat_result):
        return ("stat", tuple(value), value.st_mtime_ns, value.st_ctime_ns)
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[0], int) and value[0] >= 0:
        fd, opened, data = value  # a descriptor left open: compare what it reads, then close it
        try:
            return ("open", tuple(opened), data, os.pread(fd, 1 << 20, 0))
        finally:
            os.close(fd)
    if isinstance(value, tuple):
        return ("ok", value[0], tuple(value[1]), value[2])
    raise AssertionError("unexpected result %r" % (value,))


@pytest.fixture
def mixed(tmp_path):
    """Paths of every kind a scan meets: small and larger files, empty, symlink, directory, FIFO, missing."""
    root = tmp_path / "mixed"
    root.mkdir()
    paths = []
    for i in range(40):
        (root / ("f%02d" % i)).write_bytes(os.urandom(i * 97))
        paths.append(root / ("f%02d" % i))
    (root / "big").write_bytes(os.urandom(FIRST_SEGMENT_BYTES + 5))
    (root / "edge").write_bytes(os.urandom(FIRST_SEGMENT_BYTES - 1))
    (root / "link").symlink_to("f01")
    (root / "sub").mkdir()
    os.mkfifo(root / "fifo")
    paths += [root / "big", root / "edge", root / "link", root / "sub", root / "fifo", root / "gone", root / "f03" / "x"]
    return [os.fsencode(p) for p in paths]


@pytest.mark.parametrize("kind", ["lstat", "open+read"])
def test_run_ahead_gives_what_the_plain_calls_give(impl, mixed, kind):
    """Every result and exception, in order, as os.lstat / open_read give them, whatever the window."""
    plain = {"lstat": os.lstat, "open+read": lambda p: impl("sourceio").open_read(p, FIRST_SEGMENT_BYTES)}[kind]
    expected = [_outcome(lambda p=p: plain(p)) for p in mixed]
    for window in (1, 3, 64):
        run = impl("sourceio").run_ahead(kind, mixed, FIRST_SEGMENT_BYTES, 8, None, window, 8)
        got = [_outcome(lambda i=i: run.take(i)) for i in range(len(mixed))]
        run.close()
        assert got == expected, window
        assert run.fastest() is not None and run.fastest() >= 0
        assert run.in_flight() == []


def test_run_ahead_twins_agree(twins, mixed):
    py, c = twins("sourceio")
    for kind in ("lstat", "open+read"):
        outs = []
        for twin in (py, c):
            run = twin.run_ahead(kind, mixed, FIRST_SEGMENT_BYTES, 4, None, 5, 2)
            outs.append([_outcome(lambda i=i: run.take(i)) for i in range(len(mixed))])
        assert outs[0] == outs[1], kind


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_a_run_passed_over_or_closed_leaves_no_descriptor_open(impl, tmp_path):
    """Items skipped by a later take, and those not taken at close, have their descriptors closed."""
    paths = []
    for i in range(30):
        (tmp_path / ("b%02d" % i)).write_bytes(b"x" * (FIRST_SEGMENT_BYTES + i))  # left open by open+read
        paths.append(os.fsencode(tmp_path / ("b%02d" % i)))
    before = _open_fds()
    run = impl("sourceio").run_ahead("open+read", paths, FIRST_SEGMENT_BYTES, 8, None, 8, 8)
    fd, opened, data = run.take(5)  # 0-4 passed over
    assert data is None and opened.st_size == FIRST_SEGMENT_BYTES + 5
    os.close(fd)
    with pytest.raises(IndexError):
        run.take(3)  # behind the last taken
    run.take(12)[0].__index__()  # (an int: closed below)
    os.close(run.take(13)[0])
    run.close()
    with pytest.raises(ValueError):
        run.take(20)
    del run
    deadline = time.monotonic() + 10
    while _open_fds() > before + 1 and time.monotonic() < deadline:  # a thread may still be closing one
        time.sleep(0.01)
    # item 12's descriptor is the one still open (taken, not closed here)
    assert _open_fds() == before + 1


def test_run_ahead_refuses_paths_that_are_not_bytes_or_hold_a_nul(impl, tmp_path):
    with pytest.raises(TypeError):
        impl("sourceio").run_ahead("lstat", [str(tmp_path)], 0, 2, None, 2, 1)
    with pytest.raises(ValueError):
        impl("sourceio").run_ahead("lstat", [os.fsencode(tmp_path) + b"\0x"], 0, 2, None, 2, 1)
    with pytest.raises(KeyError):
        impl("sourceio").run_ahead("unlink", [os.fsencode(tmp_path)], 0, 2, None, 2, 1)


def test_run_ahead_holds_a_slot_for_each_operation(impl, tmp_path):
    """With the node's slots all taken, nothing of the run starts; given back, all of it runs."""
    import multiprocessing
    import threading

    (tmp_path / "f").write_bytes(b"abc")
    paths = [os.fsencode(tmp_path / "f")] * 20
    slots = multiprocessing.get_context("forkserver").BoundedSemaphore(2)
    slots.acquire()
    slots.acquire()
    run = impl("sourceio").run_ahead("lstat", paths, 0, 8, slots, 8, 8)
    got = []
    taker = threading.Thread(target=lambda: got.extend(run.take(i) for i in range(20)))
    taker.start()
    time.sleep(0.3)
    assert got == [] and run.fastest() is None  # every operation waits for a slot
    slots.release()
    slots.release()
    taker.join(10)
    assert len(got) == 20 and all(st.st_size == 3 for st in got)
    run.close()
    for _ in range(2):  # both slots given back: a bounded semaphore of 2 takes exactly two
        assert slots.acquire(timeout=5)
    assert not slots.acquire(timeout=0.05)


def test_a_run_of_fast_operations_goes_inline_with_the_same_results(impl, mixed):
    """Judged fast (tmpfs): the consumer runs the rest itself; the results are those of the plain calls."""
    expected = [_outcome(lambda p=p: os.lstat(p)) for p in mixed]
    run = impl("sourceio").run_ahead("lstat", mixed, 0, 8, None, 16, 8, 1.0, False)  # every one "fast"
    got = [_outcome(lambda i=i: run.take(i)) for i in range(len(mixed))]
    assert got == expected
    assert run.inline()
    run.close()
    # started inline (as the last run of its kind ended): the same
    run = impl("sourceio").run_ahead("open+read", mixed, FIRST_SEGMENT_BYTES, 8, None, 16, 8, 1.0, True)
    plain = impl("sourceio").open_read
    expected = [_outcome(lambda p=p: plain(p, FIRST_SEGMENT_BYTES)) for p in mixed]
    assert [_outcome(lambda i=i: run.take(i)) for i in range(len(mixed))] == expected
    assert run.inline()
    run.close()
