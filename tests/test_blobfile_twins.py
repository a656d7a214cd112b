"""One blob file of the ``file:`` target written in one call (``clfsload._native.blobfile``): both twins alike."""

import errno
import os
import stat

import pytest


@pytest.mark.parametrize("size", [0, 1, 4096, 3 << 20])
@pytest.mark.parametrize("durable", [False, True])
def test_written_whole_and_renamed(impl, tmp_path, size, durable):
    payload = os.urandom(size)
    tmp, path = tmp_path / ".tmp-1", tmp_path / "blob"
    for kind in (bytes, bytearray, memoryview):
        impl("blobfile").write_file(str(tmp), str(path), kind(payload), durable)
        assert path.read_bytes() == payload
        assert not tmp.exists()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask


def test_renames_over_an_existing_blob(impl, tmp_path):
    (tmp_path / "blob").write_bytes(b"old")
    impl("blobfile").write_file(os.fsencode(tmp_path / "t"), os.fsencode(tmp_path / "blob"), b"new")
    assert (tmp_path / "blob").read_bytes() == b"new"


def _raised(twin, *args):
    with pytest.raises(OSError) as info:
        twin.write_file(*args)
    exc = info.value
    return type(exc), exc.errno, exc.strerror, exc.filename, exc.filename2


def test_errors_alike(twins, tmp_path):
    py, c = twins("blobfile")
    # the open fails: the temp file exists already (never overwritten), nothing is removed
    (tmp_path / "taken").write_bytes(b"someone's")
    for twin in (py, c):
        args = (str(tmp_path / "taken"), str(tmp_path / "blob"), b"x")
        assert _raised(twin, *args)[:2] == (FileExistsError, errno.EEXIST)
        assert (tmp_path / "taken").read_bytes() == b"someone's"
    assert _raised(c, str(tmp_path / "taken"), "b", b"x") == _raised(py, str(tmp_path / "taken"), "b", b"x")
    # the folder is gone
    missing = (str(tmp_path / "gone" / "t"), str(tmp_path / "gone" / "b"), b"x")
    assert _raised(c, *missing) == _raised(py, *missing)
    assert _raised(py, *missing)[0] is FileNotFoundError
    # the rename fails (a directory in the blob's place): the temp file is removed
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "inside").write_bytes(b"")
    for twin in (py, c):
        got = _raised(twin, str(tmp_path / "t"), str(tmp_path / "dir"), b"payload")
        assert got[1] in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST)
        assert not (tmp_path / "t").exists()
    assert _raised(c, str(tmp_path / "t"), str(tmp_path / "dir"), b"p") == _raised(
        py, str(tmp_path / "t"), str(tmp_path / "dir"), b"p")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_write_error_alike(twins, tmp_path):
    """A write that fails (ENOSPC) raises it and removes the temp file; here the 'temp file' is /dev/full's link."""
    py, c = twins("blobfile")
    for twin in (py, c):
        link = tmp_path / "full"
        os.symlink("/dev/full", link)  # O_EXCL refuses a symlink: EEXIST, the open's error
        assert _raised(twin, str(link), str(tmp_path / "b"), b"x" * 10)[:2] == (FileExistsError, errno.EEXIST)
        os.unlink(link)


def test_not_bytes_like_refused(twins, tmp_path):
    py, c = twins("blobfile")
    for twin in (py, c):
        with pytest.raises(TypeError):
            twin.write_file(str(tmp_path / "t"), str(tmp_path / "b"), "text")
        assert not (tmp_path / "t").exists()
