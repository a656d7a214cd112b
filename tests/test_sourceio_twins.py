"""The small-file chain of the read pipeline (``clfsload._native.sourceio``): both twins alike, and like the calls it replaces."""

import errno
import os
import stat

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
