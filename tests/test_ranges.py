"""Huge files loaded in ranges of segments (clfsload.work.ranges): the same blobs as one stream, and never torn."""

import dataclasses
import logging
import os
import re
from concurrent.futures import Future

import pytest

import clfsload
from clfsload.work import transfer
from clfsload._native import envelope, hashing
from clfsload.work.checksum_log import file_digest, ranged_digest, range_span
from clfsload.clfs.blockmap import block_ids_in_order
from clfsload.clfs.canonical import canonical_form, diff_canonical
from clfsload.clfs.container import Container, FolderSource
from clfsload.clfs.fh_rules import handle_rule_violations
from clfsload.clfs.constants import DIRECT_BLOCKS, FIRST_SEGMENT_BYTES, INDIR_POINTERS, OTHER_SEGMENT_BYTES, ROOT_ID
from clfsload.clfs.constants import Btype, Ftype
from clfsload.clfs.decode import decode_body
from clfsload.clfs.objects import InodeName, Sealed, file_blobs, file_inode_blobs
from clfsload.work.ranges import READ_ATTEMPTS, FileAssembly, plan_ranges, range_size
from clfsload.work.scan import EntryStat, Problem
from clfsload.work.transfer import UnitRunner
from clfsload.work.units import HugeFile, RangeVanished, RunParams

PARAMS = RunParams(containerid=0x1234, fsid=0x77, secret=b"s" * 16, compress=True, preserve_hardlinks=False)
SEG = OTHER_SEGMENT_BYTES
TIMES = ("vattr.mtime", "vattr.ctime")


class Capture:
    """An uploader that keeps the blobs it is given, by name (a later write replaces an earlier)."""

    compress = True

    def __init__(self):
        self.blobs = {}
        self.order = []

    def submit(self, blob):
        # a range's segments come sealed: their bodies are what the payloads unwrap to
        self.blobs[blob.name] = envelope.unwrap(blob.payload) if isinstance(blob, Sealed) else blob.body
        self.order.append(blob.name)
        done = Future()
        done.set_result(None)
        return done


def huge_file(worker, path):
    fh = worker.mint.fh(ROOT_ID, Ftype.REG, worker.mint.child_seq(1, 0))
    return HugeFile(1, 0, b"f", os.fsencode(path), fh, ROOT_ID, EntryStat.of(os.lstat(path)))


def streamed(worker, path, fh):
    """The blobs the one-stream path makes of the file as it is now, by name."""
    attrs = worker.attrs(EntryStat.of(os.lstat(path)), 0, 1)
    with open(path, "rb") as f:
        blobs = file_blobs(f, attrs, fh, [ROOT_ID], b"f", InodeName(ROOT_ID), ids=worker.mint.block_ids(fh))
        return {blob.name: blob.body for blob in blobs}


def run_ranges(worker, assembly, between=None):
    """Run every range of the current attempt in order (``between(i)`` after range i); the verdict."""
    tasks = assembly.tasks()
    for i, task in enumerate(tasks):
        assert not assembly.add(task, worker.store_range(task)) or i == len(tasks) - 1
        if between is not None:
            between(i)
    return assembly.verdict()


@pytest.mark.parametrize("size, per_range, expected", [
    (0, 1, [(1, 0)]),
    (FIRST_SEGMENT_BYTES, 1, [(1, 0)]),
    (FIRST_SEGMENT_BYTES + 1, 1, [(1, 1)]),
    (FIRST_SEGMENT_BYTES + 3 * SEG, 2, [(1, 2), (3, 3)]),
    (FIRST_SEGMENT_BYTES + 4 * SEG + 1, 2, [(1, 2), (3, 4), (5, 5)]),
    (FIRST_SEGMENT_BYTES + 256 * SEG, 128, [(1, 128), (129, 256)]),
])  # fmt: skip
def test_plan_ranges_covers_every_segment_once(size, per_range, expected):
    assert plan_ranges(size, per_range) == expected


@pytest.mark.parametrize("size, range_segments, expected", [
    (FIRST_SEGMENT_BYTES + 4 * SEG, 128, 0),  # 32 MiB of data: one unit's, as always
    (FIRST_SEGMENT_BYTES + 4 * SEG + 1, 128, 4),  # past it: spread, in ranges of 4 segments at least
    (128 << 20, 128, 4),  # four 128 MiB files of one directory: 16 units, not one
    (FIRST_SEGMENT_BYTES + 100 * SEG, 128, 13),  # about an eighth of the file per range
    (FIRST_SEGMENT_BYTES + 4096 * SEG, 128, 128),  # never more than range_segments
    (FIRST_SEGMENT_BYTES + 2 * SEG, 1, 1),  # a switch below 4 is threshold and range, as before
    (FIRST_SEGMENT_BYTES + 3 * SEG, 2, 2),
    (FIRST_SEGMENT_BYTES + 2 * SEG, 2, 0),
    (FIRST_SEGMENT_BYTES + 4096 * SEG, 0, 0),  # 0: never split
])  # fmt: skip
def test_a_file_goes_in_ranges_by_its_size_alone(size, range_segments, expected):
    assert range_size(size, range_segments) == expected


@pytest.mark.parametrize("per_range", [1, 2, 5])
def test_ranges_store_the_blobs_one_stream_would(tmp_path, per_range):
    path = tmp_path / "f"
    path.write_bytes(os.urandom(FIRST_SEGMENT_BYTES + 3 * SEG + 12345))
    worker = UnitRunner(PARAMS, Capture())
    assembly = FileAssembly(huge_file(worker, path), per_range)
    assert run_ranges(worker, assembly) == "store"
    worker.directories.store_ranged_file(assembly)
    assert worker.uploader.blobs == streamed(worker, path, assembly.huge.fh)
    assert worker.uploader.order[-1] == hashing.blob_name(assembly.huge.fh, Btype.REG, *InodeName(ROOT_ID))  # inode last
    fh, span, digest = assembly.checksum()
    assert fh == assembly.huge.fh and span == range_span(per_range)
    assert digest == ranged_digest(path, span) != file_digest(path)


def test_the_block_map_of_a_ranged_file_names_every_segment_in_order():
    """Past the 1023 direct blocks and the first indirect tree: the ids decode back in block order."""
    worker = UnitRunner(PARAMS, Capture())
    fh = worker.mint.fh(ROOT_ID, Ftype.REG, worker.mint.child_seq(1, 0))
    segments = DIRECT_BLOCKS - 1 + INDIR_POINTERS + 3
    size = FIRST_SEGMENT_BYTES + segments * SEG
    attrs = worker.attrs(EntryStat(0o100644, 1, 1, 1, 0, 0, size, 1.0, 2.0, 3.0, 0, 2, 3), size)
    ids = worker.mint.block_ids(fh)
    blobs = file_inode_blobs(attrs, fh, [ROOT_ID], b"f", InodeName(ROOT_ID), b"h" * FIRST_SEGMENT_BYTES, segments, ids)
    by_name = {blob.name: blob.body for blob in blobs}
    inode = decode_body(blobs[-1].body)
    assert inode.vattr.vattr.size == size

    def read_indirect(block_id):
        return decode_body(by_name[hashing.blob_name(block_id, Btype.INDIRECT, fh)]).indir

    found = block_ids_in_order(inode.bmap.direct[1:], inode.bmap.tree_roots, read_indirect)
    assert found == [ids.segment(i) for i in range(1, segments + 1)]


@pytest.mark.parametrize("change", ["append", "rewrite-same-size", "truncate"])
def test_a_file_changed_between_ranges_is_planned_again_and_never_stored_torn(tmp_path, change):
    path = tmp_path / "f"
    path.write_bytes(os.urandom(FIRST_SEGMENT_BYTES + 3 * SEG))
    worker = UnitRunner(PARAMS, Capture())
    assembly = FileAssembly(huge_file(worker, path), 1)

    def modify(i):
        if i != 0:
            return
        st = path.stat()
        if change == "append":
            with open(path, "ab") as f:
                f.write(b"more")
        elif change == "truncate":
            os.truncate(path, FIRST_SEGMENT_BYTES + SEG + 5)
        else:
            with open(path, "r+b") as f:
                f.seek(FIRST_SEGMENT_BYTES + 2 * SEG + 7)
                f.write(b"changed")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    assert run_ranges(worker, assembly, modify) == "again"
    assert assembly.attempt == 2
    assert run_ranges(worker, assembly) == "store"
    worker.directories.store_ranged_file(assembly)
    expected = streamed(worker, path, assembly.huge.fh)
    # Every blob of the file as it is now was stored with its current content,
    # and nothing else: the ranges that found the file changed stored nothing.
    assert worker.uploader.blobs == expected


def test_a_file_that_keeps_changing_is_a_problem_after_the_read_attempts(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(os.urandom(FIRST_SEGMENT_BYTES + 2 * SEG))
    worker = UnitRunner(PARAMS, Capture())
    assembly = FileAssembly(huge_file(worker, path), 1)

    def touch(i):
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    verdicts = [run_ranges(worker, assembly, touch) for _ in range(READ_ATTEMPTS)]
    assert verdicts[:-1] == ["again"] * (READ_ATTEMPTS - 1)
    assert isinstance(verdicts[-1], Problem) and "changed while being read" in verdicts[-1].reason
    assert hashing.blob_name(assembly.huge.fh, Btype.REG, *InodeName(ROOT_ID)) not in worker.uploader.blobs  # no inode


def test_a_file_gone_or_unreadable_before_its_ranges_run(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(os.urandom(FIRST_SEGMENT_BYTES + 2 * SEG))
    worker = UnitRunner(PARAMS, Capture())
    assembly = FileAssembly(huge_file(worker, path), 1)
    path.unlink()
    assert all(isinstance(worker.store_range(t), RangeVanished) for t in assembly.tasks())
    path.mkdir()  # a directory in its place: open_for_reading refuses it
    outcome = worker.store_range(assembly.tasks()[0])
    assert isinstance(outcome, Problem) and outcome.path == os.fsencode(path)


def test_ranges_an_earlier_run_stored_stand_only_for_the_same_file(tmp_path):
    """Resumed: a stored range is reused when the file's stat and the range bounds are the same."""
    path = tmp_path / "f"
    path.write_bytes(os.urandom(FIRST_SEGMENT_BYTES + 3 * SEG))
    worker = UnitRunner(PARAMS, Capture())
    huge = huge_file(worker, path)
    first = FileAssembly(huge, 1)
    stored = [(task.last, worker.store_range(task)) for task in first.tasks()[:2]]
    again = FileAssembly(huge, 1, stored)
    assert [(t.first, t.last) for t in again.tasks()] == [(3, 3)]
    assert [(t.first, t.last) for t in FileAssembly(huge, 2, stored).tasks()] == [(1, 2), (3, 3)]  # other bounds
    touched = huge.stat._replace(st_mtime_ns=huge.stat.st_mtime_ns + 1)
    changed = FileAssembly(HugeFile(1, 0, b"f", huge.path, huge.fh, ROOT_ID, touched), 1, stored)
    assert len(changed.tasks()) == 3
    # Reused ranges and new ones make the same file as one stream.
    for task in again.tasks():
        assert again.add(task, worker.store_range(task))
    assert again.verdict() == "store"
    worker.directories.store_ranged_file(again)
    assert worker.uploader.blobs == streamed(worker, path, huge.fh)


@pytest.mark.parametrize("change", ["rewrite", "shrink-after-a-later-range-stored", "vanish"])
def test_a_ranged_file_changed_once_mid_load_gives_the_container_of_the_final_tree(change, tmp_path, monkeypatch,
                                                                                   caplog):
    """The driver plans the file again (or leaves it out), the directory is swept, and the published
    container equals a clean load of the tree as it ends: no torn file, no leftover segment."""
    src = tmp_path / "src"
    src.mkdir()
    big = src / "big.bin"
    big.write_bytes(os.urandom(FIRST_SEGMENT_BYTES + 3 * SEG + 10))
    (src / "small.txt").write_bytes(b"small\n")
    monkeypatch.setenv("CLFSLOAD_RANGE_SEGMENTS", "1")
    caplog.set_level(logging.INFO, logger="clfsload")
    real = transfer.store_range
    calls = []

    def changing(worker, task):
        calls.append(task)
        if len(calls) == 1 and change == "shrink-after-a-later-range-stored":
            real(worker, dataclasses.replace(task, first=3, last=3))  # as if another worker ran range 3 first
            os.truncate(big, FIRST_SEGMENT_BYTES + SEG + 5)
        outcome = real(worker, task)
        if len(calls) == 1 and change == "vanish":
            big.unlink()
        if len(calls) == 2 and change == "rewrite":
            st = big.stat()
            with open(big, "r+b") as f:
                f.write(b"rewritten")
            os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        return outcome

    monkeypatch.setattr(transfer, "store_range", changing)
    (tmp_path / "out").mkdir()
    (tmp_path / "clean").mkdir()
    result = clfsload.load(str(tmp_path / "state"), str(src), "file:" + str(tmp_path / "out"), "c", new=True,
                           processes=0)
    assert result.ok, result.message
    assert len(calls) > 3  # planned again (vanish: ranges 2 and 3 found it gone)
    swept = re.findall(r"sweep: \d+ directories and \d+ objects checked, (\d+) leftover blobs deleted", caplog.text)
    assert swept == ["0" if change == "rewrite" else "1"]  # segment 3 of the longer file / 1 of the gone one
    monkeypatch.setattr(transfer, "store_range", real)
    clean = clfsload.load(str(tmp_path / "state-clean"), str(src), "file:" + str(tmp_path / "clean"), "c",
                          new=True, processes=0)
    assert clean.ok, clean.message
    ours = Container(FolderSource(str(tmp_path / "out" / "c")))
    assert ours.finished and ours.strays() == []
    assert handle_rule_violations(ours) == []
    expected = canonical_form(Container(FolderSource(str(tmp_path / "clean" / "c"))))
    differences = diff_canonical(expected, canonical_form(ours))
    if change == "vanish":  # the directory is stored as listed, before the unlink changed its mtime and ctime
        differences = [d for d in differences if not (d.path == "/" and d.field.split("[")[0] in TIMES)]
    assert differences == []
