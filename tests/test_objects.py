"""Object assembly (§9) against the worked example of §18, and file segmenting (§11)."""

import io
import os
import random
import struct

import pytest

from clfsload._native import envelope, hashing
from clfsload.clfs import handles
from clfsload.clfs.constants import FIRST_SEGMENT_BYTES, OTHER_SEGMENT_BYTES, ROOT_ID, Btype, Ftype, Obtype
from clfsload.clfs.objects import (
    Blob,
    InodeName,
    bucket_blob,
    directory_blobs,
    file_blobs,
    file_segment_blob,
    file_segment_sealed,
    replace_handles,
    seal,
    small_file_blob,
    symlink_size,
    yield_all,
)
from clfsload.clfs.vattr import VAttr, split_time, vattr_from_stat
from clfsload.errors import EncodeError

CONTAINERID = 0x12345678
FSID = 0x0BADF00D
DOCS_FH = handles.make_fh(CONTAINERID, 0, 1, Ftype.DIR, 1001, 0x1111111111111111)
HELLO_FH = handles.make_fh(CONTAINERID, 1, 1, Ftype.REG, 1002, 0x0123456789ABCDEF)
TIMES = (1600000000, 250000000, 1600000001, 500000000, 1600000002, 750000000)

import _builder
from _spec_vectors import DOCS_INODE_BODY as DOCS_BODY, HELLO_BLOB_RAW as HELLO_BLOB


def example_attrs(mode, btype, fileid):
    return VAttr(mode, btype, 1000, 1000, 0, *TIMES, FSID, fileid, 0, 0, 1, CONTAINERID)


def test_filehandles_of_the_worked_example():
    assert DOCS_FH.hex() == "11cf8a4600010100e9030000000000001111111111111111"
    assert HELLO_FH.hex() == "11cf8a4601010200ea03000000000000efcdab8967452301"
    assert hashing.fnv1_variant(DOCS_FH) == 0x8CD16A36
    assert "%016X" % hashing.hash64(HELLO_FH) == "C03B0E4DB547D190"


def test_hello_inode_matches_spec_18_6():
    attrs = example_attrs(0o100644, Btype.REG, 123456)
    blobs = []
    final = yield_all(file_blobs(io.BytesIO(b"Hello, CLFS!\n"), attrs, HELLO_FH, [DOCS_FH], b"hello.txt", InodeName(DOCS_FH)), blobs.append)
    assert final.size == 13
    assert [b.name for b in blobs] == [
        "C03B0E4DB547D190_11CF8A4601010200EA03000000000000EFCDAB8967452301.0001.8CD16A362DE4529F.00000000009.FFFFFFFF.0002"
    ]
    assert envelope.wrap(blobs[0].body, compress=False) == HELLO_BLOB
    compressed = envelope.wrap(blobs[0].body, compress=True)
    assert compressed[:11] == bytes.fromhex("00000100" "04224d18405077")
    assert envelope.unwrap(compressed) == HELLO_BLOB[4:]


def test_docs_inode_matches_spec_18_5():
    attrs = example_attrs(0o40755, Btype.DIR, 654321)
    blobs = list(directory_blobs(attrs, DOCS_FH, ROOT_ID, [(b"hello.txt", HELLO_FH)], 0, b"docs", InodeName(ROOT_ID)))
    assert len(blobs) == 1
    assert blobs[0].body == DOCS_BODY
    assert blobs[0].name == (
        "8CD16A362DE4529F_11CF8A4600010100E9030000000000001111111111111111.0002.0000006457871C6B.00000000009.FFFFFFFF.0002"
    )


def test_root_is_written_under_tmp_with_its_extattrs_last():
    attrs = example_attrs(0o40755, Btype.DIR, 2)
    (blob,) = directory_blobs(attrs, ROOT_ID, ROOT_ID, [(b"docs", DOCS_FH)], 1, b"src", InodeName(ROOT_ID), [("containeridEpoch", "2")])
    assert blob.name == "tmp0000006457871C6B_00000000000000000000000000000064.0002.0000006457871C6B.00000000009.FFFFFFFF.0002"
    handle_types = []
    pos = 0
    while pos < len(blob.body):
        count, _, obtype = struct.unpack_from("<III", blob.body, pos + 4)
        handle_types.append(obtype)
        pos += count
    assert handle_types == [Obtype.VATTR, Obtype.BMAP, Obtype.NAME, Obtype.DIRENTS, Obtype.EXTATTRS]
    # nlink = subdirectories + 2; size = 4 + 23 + 24 + 34 (spec §18.7 root DIRENTS: 4 + 81)
    nlink, size = struct.unpack_from("<I", blob.body, 24 + 88)[0], struct.unpack_from("<Q", blob.body, 24 + 16)[0]
    assert (nlink, size) == (3, 85)


def _segments(size):
    data = random.Random(size).randbytes(size)
    attrs = example_attrs(0o100644, Btype.REG, 1)
    blobs = []
    final = yield_all(file_blobs(io.BytesIO(data), attrs, HELLO_FH, [DOCS_FH], b"f", InodeName(DOCS_FH)), blobs.append)
    return data, final, blobs


@pytest.mark.parametrize(
    "size", [0, 1, FIRST_SEGMENT_BYTES - 1, FIRST_SEGMENT_BYTES, FIRST_SEGMENT_BYTES + 1, FIRST_SEGMENT_BYTES + OTHER_SEGMENT_BYTES + 7]
)
def test_file_segments_cover_the_data_with_the_right_offsets(size):
    data, final, blobs = _segments(size)
    assert final.size == size
    inode = blobs[-1]
    assert inode.name.split(".")[1] == "0001"
    segs = blobs[:-1]
    assert len(segs) == max(0, -(-(size - FIRST_SEGMENT_BYTES) // OTHER_SEGMENT_BYTES))
    rebuilt = bytearray()
    # DATA handle of the inode is its last handle: header(20) + u32 length + data.
    tail = inode.body
    pos = 0
    while pos < len(tail):
        count, real, obtype = struct.unpack_from("<III", tail, pos + 4)
        if obtype == Obtype.DATA:
            (n,) = struct.unpack_from("<I", tail, pos + 20)
            rebuilt += tail[pos + 24 : pos + 24 + n]
        pos += count
    for k, seg in enumerate(segs, start=1):
        assert seg.name.split(".")[1] == "0008"
        assert seg.name.split(".")[2] == "%016X" % hashing.hash64(HELLO_FH)
        count, real, obtype = struct.unpack_from("<III", seg.body, 4)
        assert obtype == Obtype.DATA
        (n,) = struct.unpack_from("<I", seg.body, 20)
        rebuilt += seg.body[24 : 24 + n]
        ctime, offset = struct.unpack_from("<IQ", seg.body, count + 20)
        assert (ctime, offset) == (TIMES[2], FIRST_SEGMENT_BYTES + (k - 1) * OTHER_SEGMENT_BYTES)
    assert bytes(rebuilt) == data


@pytest.mark.parametrize("size", [0, 1, 4096, FIRST_SEGMENT_BYTES - 1])
@pytest.mark.parametrize("where", [InodeName(DOCS_FH), InodeName.parked()])
def test_small_file_blob_is_the_blob_file_blobs_makes(size, where):
    data = bytes(random.Random(size).getrandbits(8) for _ in range(size))
    attrs = example_attrs(0o100644, 1, 1002)
    streamed = list(file_blobs(io.BytesIO(data), attrs, HELLO_FH, [DOCS_FH], b"hello.txt", where))
    assert streamed == [small_file_blob(data, attrs, HELLO_FH, [DOCS_FH], b"hello.txt", where)]


def test_small_file_blob_refuses_data_that_needs_a_segment():
    with pytest.raises(ValueError, match="does not fit its inode"):
        small_file_blob(b"x" * FIRST_SEGMENT_BYTES, example_attrs(0o100644, 1, 1002), HELLO_FH, [DOCS_FH], b"h",
                        InodeName(DOCS_FH))


class ShortReads(io.RawIOBase):
    """A stream that returns at most 1000 bytes per read, like a slow filesystem."""

    def __init__(self, data):
        self._data = io.BytesIO(data)

    def readable(self):
        return True

    def read(self, n=-1):
        return self._data.read(min(n, 1000) if n >= 0 else 1000)


def test_short_reads_never_change_segment_boundaries():
    data = random.Random(7).randbytes(FIRST_SEGMENT_BYTES + 5000)
    attrs = example_attrs(0o100644, Btype.REG, 1)
    blobs = []
    final = yield_all(file_blobs(ShortReads(data), attrs, HELLO_FH, [DOCS_FH], b"f", InodeName(DOCS_FH)), blobs.append)
    assert final.size == len(data)
    assert len(blobs) == 2
    (n,) = struct.unpack_from("<I", blobs[0].body, 20)
    assert n == 5000


def test_segments_read_in_pieces_are_the_segments_read_whole():
    """A stream giving 1 MiB pieces (the read pipeline's) makes the same blobs as one giving whole segments."""

    class Pieces(ShortReads):
        def read(self, n=-1):
            return self._data.read(min(n, 1 << 20) if n >= 0 else 1 << 20)

    rng = random.Random(11)
    data = rng.randbytes(FIRST_SEGMENT_BYTES + 2 * OTHER_SEGMENT_BYTES + 12345)
    attrs = example_attrs(0o100644, Btype.REG, 1)
    whole = list(file_blobs(io.BytesIO(data), attrs, HELLO_FH, [DOCS_FH], b"f", InodeName(DOCS_FH)))
    pieces = list(file_blobs(Pieces(data), attrs, HELLO_FH, [DOCS_FH], b"f", InodeName(DOCS_FH)))
    assert len(whole) == len(pieces) == 4  # three segments, then the inode (segment ids are random here)
    for a, b in zip(whole[:3], pieces[:3]):
        assert a.body == b.body
    assert [len(b.body) for b in pieces[:3]] == [len(b.body) for b in whole[:3]]


def test_replace_handles_swaps_only_the_named_types():
    attrs = example_attrs(0o100644, Btype.REG, 123456)
    (blob,) = [b for b in file_blobs(io.BytesIO(b"Hello, CLFS!\n"), attrs, HELLO_FH, [DOCS_FH], b"hello.txt", InodeName(DOCS_FH))]
    from clfsload._native import records

    new_back = records.encode_back([DOCS_FH, ROOT_ID])
    rewritten = replace_handles(blob.body, {Obtype.BACK: new_back})
    assert new_back in rewritten
    assert rewritten.replace(new_back, b"") == blob.body.replace(records.encode_back([DOCS_FH]), b"")


def test_bucket_blob_appends_logfiles_sorted():
    blob = bucket_blob("00000000-0000-4000-8000-000000000000", ["output.txt", "output.process-transfer-10.txt", "output.process-transfer-1.txt"])
    assert blob.name == "00000063_00000000000000000000000000000063.00000000009.FFFFFFFF.0001"
    body = blob.body
    assert body.index(b"logfile001") < body.index(b"output.process-transfer-1.txt") < body.index(b"output.process-transfer-10.txt") < body.index(b"output.txt")


def test_times_follow_the_float_rule_and_reject_out_of_range():
    assert split_time(1700000000123456789 / 1e9) == (1700000000, 123456716)
    with pytest.raises(EncodeError):
        split_time(-1.0)
    with pytest.raises(EncodeError):
        split_time(float(1 << 32))


def test_vattr_from_stat_of_a_real_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    os.utime(path, ns=(1700000000987654321, 1700000000123456789))
    st = os.lstat(path)
    attrs = vattr_from_stat(st, 3, 1, FSID, CONTAINERID)
    assert (attrs.mtime_sec, attrs.mtime_nsec) == (1700000000, 123456716)
    assert attrs.btype == Btype.REG and attrs.fileid == st.st_ino and attrs.mode == st.st_mode


def test_symlink_size_counts_code_points():
    assert symlink_size("ünï".encode()) == 3
    assert symlink_size(b"\xff\xfe") == 2  # undecodable bytes count one each (surrogateescape)


def test_fh_factory_redraws_a_zero_hash(monkeypatch):
    calls = []

    def fake_fnv(fh):
        calls.append(fh)
        return 0 if len(calls) == 1 else 1

    monkeypatch.setattr(_builder.hashing, "fnv1_variant", fake_fnv)
    factory = _builder.FhFactory(CONTAINERID, _builder.SeqRange(5000, 5002), random.Random(1))
    fh = factory.new(DOCS_FH, Ftype.DIR)
    assert len(calls) == 2 and calls[0] != fh and calls[0][:16] == fh[:16]
    assert fh[4] == DOCS_FH[5] and fh[5] == 5000 % 48 and fh[6] == Ftype.DIR
    child = factory.new(fh, Ftype.REG)
    assert child[4] == child[5] == fh[5]
    with pytest.raises(LookupError):
        factory.new(fh, Ftype.REG)


def test_seal_checksums_the_payload():
    sealed = seal(Blob("n", b"x" * 1000), compress=True)
    import xxhash

    assert sealed.digest == xxhash.xxh3_128_digest(sealed.payload)
    assert envelope.unwrap(sealed.payload) == b"x" * 1000


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("kind", ["zeros", "random", "text", "random then text", "text then random"])
def test_a_segment_sealed_where_encoded_is_the_sealed_segment(kind, compress):
    """file_segment_sealed(parts) is seal(file_segment_blob(parts)): same name, same payload, raw or LZ4."""
    rng = random.Random(len(kind))
    text = b"".join(rng.choice([b"alpha ", b"beta ", b"gamma\n"]) for _ in range(200000))[:1 << 20]
    piece = {"zeros": lambda i: bytes(1 << 20), "random": lambda i: rng.randbytes(1 << 20), "text": lambda i: text,
             "random then text": lambda i: rng.randbytes(1 << 20) if i < 4 else text,
             "text then random": lambda i: text if i < 4 else rng.randbytes(1 << 20)}[kind]
    fh = bytes(range(32))
    for index, count, tail in ((1, 8, 0), (2, 8, 0), (5, 3, 12345), (3, 1, 1)):
        parts = [piece(i) for i in range(count)] + ([rng.randbytes(tail)] if tail else [])
        seg_id = rng.randbytes(16)
        sealed = file_segment_sealed(parts, index, seg_id, 1700000000, fh, compress)
        assert sealed == seal(file_segment_blob(parts, index, seg_id, 1700000000, fh), compress)
        assert envelope.unwrap(sealed.payload) == file_segment_blob(b"".join(parts), index, seg_id, 1700000000, fh).body
