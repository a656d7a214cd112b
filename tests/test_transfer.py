"""Storing one regular file (clfsload.work.transfer.UnitRunner): the one-read path of small files and its fallbacks."""

import os
from concurrent.futures import Future

import pytest

from clfsload.work import transfer
from clfsload.clfs.constants import FIRST_SEGMENT_BYTES, ROOT_ID, Ftype
from clfsload._native import envelope
from clfsload.clfs.objects import Blob, InodeName, Sealed, file_blobs
from clfsload.work.scan import EntryStat
from clfsload.work.transfer import UnitRunner
from clfsload.work.units import RunParams
from clfsload.work.upload import DirectUploader, first_error

PARAMS = RunParams(containerid=0x1234, fsid=0x77, secret=b"s" * 16, compress=True, preserve_hardlinks=False)


class Capture:
    """An uploader that keeps the blobs it is given."""

    compress = True

    def __init__(self):
        self.blobs = []

    def submit(self, blob):
        # data segments come sealed: kept as the blobs whose payloads they are
        self.blobs.append(Blob(blob.name, envelope.unwrap(blob.payload)) if isinstance(blob, Sealed) else blob)
        done = Future()
        done.set_result(None)
        return done


def expected_blobs(worker, path, fh):
    """What the general (streaming) path makes of the file as it is now."""
    st = EntryStat.of(os.lstat(path))
    attrs = worker.attrs(st, 0, 1)
    with open(path, "rb") as f:
        return list(file_blobs(f, attrs, fh, [ROOT_ID], b"f", InodeName(ROOT_ID), ids=worker.mint.block_ids(fh)))


def store(worker, path):
    fh = worker.mint.fh(ROOT_ID, Ftype.REG, worker.mint.child_seq(1, 0))
    st = EntryStat.of(os.lstat(path))
    futures, size = worker.store_object(os.fsencode(path), st, Ftype.REG, fh, [ROOT_ID], b"f", InodeName(ROOT_ID))
    assert first_error(futures) is None
    return fh, size


@pytest.mark.parametrize("size", [0, 1, 5000, FIRST_SEGMENT_BYTES - 1, FIRST_SEGMENT_BYTES, 3 * FIRST_SEGMENT_BYTES])
def test_a_quiet_file_is_stored_as_the_streaming_path_would(tmp_path, size):
    path = tmp_path / "f"
    path.write_bytes(os.urandom(size))
    worker = UnitRunner(PARAMS, Capture())
    fh, stored = store(worker, path)
    assert stored == size
    assert worker.uploader.blobs == expected_blobs(worker, path, fh)


@pytest.mark.parametrize("change", ["grow", "shrink", "grow-past-the-inode"])
def test_a_small_file_that_changes_after_it_is_opened_is_read_again_whole(tmp_path, monkeypatch, change):
    path = tmp_path / "f"
    path.write_bytes(b"a" * 3000)
    real_open = transfer.open_for_reading

    def open_then_change(p):
        opened = real_open(p)
        if change == "shrink":
            os.truncate(path, 1000)
        else:
            with open(path, "ab") as f:
                f.write(b"b" * (500 if change == "grow" else 2 * FIRST_SEGMENT_BYTES))
        return opened

    monkeypatch.setattr(transfer, "open_for_reading", open_then_change)
    worker = UnitRunner(PARAMS, Capture())
    fh, stored = store(worker, path)
    assert stored == path.stat().st_size  # what the file holds now, never the size first seen
    assert worker.uploader.blobs == expected_blobs(worker, path, fh)


def test_direct_uploader_writes_at_once_and_reports_failures_through_the_future(tmp_path):
    from clfsload.clfs.objects import Blob
    from clfsload.targets import open_target

    (tmp_path / "out").mkdir()
    target = open_target("file:" + str(tmp_path / "out"), "c", "-", create=True)
    uploader = DirectUploader(target, compress=False)
    assert uploader.submit(Blob("ab", b"body")).exception() is None
    assert (tmp_path / "out" / "c" / "ab").exists()
    assert (uploader.blobs, uploader.payload_bytes) == (1, (tmp_path / "out" / "c" / "ab").stat().st_size)
    failed = uploader.submit(Blob("a/b", b"body"))  # a name no target accepts
    assert "path separator" in str(failed.exception())
    assert uploader.blobs == 1
    uploader.close()
