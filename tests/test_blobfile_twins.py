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


# --- fsync_files: the local target's batches of fsyncs ---------------------------------------


def test_fsync_files_fsyncs_every_file_and_skips_the_gone(impl, tmp_path, monkeypatch):
    paths = []
    for i in range(6):
        (tmp_path / ("b%d" % i)).write_bytes(b"%d" % i)
        paths.append(str(tmp_path / ("b%d" % i)))
    paths.insert(3, str(tmp_path / "deleted since"))
    impl("blobfile").fsync_files(paths)  # no error: the gone one skipped
    impl("blobfile").fsync_files([os.fsencode(p) for p in paths])
    impl("blobfile").fsync_files([])


def test_fsync_files_stops_at_the_first_error_alike(twins, tmp_path):
    py, c = twins("blobfile")
    (tmp_path / "f").write_bytes(b"x")
    os.mkfifo(tmp_path / "fifo")  # would block an O_RDONLY open: never reached, the error before stops
    outs = []
    for twin in (py, c):
        with pytest.raises(OSError) as info:
            twin.fsync_files([str(tmp_path / "f"), str(tmp_path / "f" / "under a file"), str(tmp_path / "fifo")])
        exc = info.value
        outs.append((type(exc), exc.errno, exc.strerror, exc.filename))
    assert outs[0] == outs[1]
    assert outs[0][:2] == (NotADirectoryError, errno.ENOTDIR) and outs[0][3] == str(tmp_path / "f" / "under a file")


def test_fsync_files_error_of_fsync_alike(twins):
    """An fsync that fails (EINVAL: /dev/null cannot be synced on Linux) raises without a path, in both."""
    py, c = twins("blobfile")
    outs = []
    for twin in (py, c):
        with pytest.raises(OSError) as info:
            twin.fsync_files(["/dev/null"])
        outs.append((type(info.value), info.value.errno, info.value.filename))
    assert outs[0] == outs[1] and outs[0][2] is None
