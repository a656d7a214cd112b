"""Tests of the strict blob decoder (clfsload.clfs.decode) against spec §18 and bad input."""

import struct
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clfsload._native import envelope, records
from clfsload.clfs.constants import NULL_ID, ROOT_ID, Obtype
from clfsload.clfs.decode import DataBack, FormatWarning, decode_body, decode_payload
from clfsload.clfs.vattr import VAttr
from clfsload.errors import FormatError

from _spec_vectors import (
    DOCS_FH, HELLO_FH, BLOB, VATTR_HELLO, DIRENTS_DOCS, DOCS_INODE_BODY, HELLO_BLOB_RAW, BUCKET_BODY, FILE_SEGMENT_BODY, DIR_SEGMENT_BODY, INDIRECT_BLOCK_BODY, ROOT_DIRENTS, ROOT_BMAP,
)


HELLO_VATTR = VAttr(
    mode=0o100644, btype=1, uid=1000, gid=1000, size=13,
    mtime_sec=1600000000, mtime_nsec=250000000, ctime_sec=1600000001, ctime_nsec=500000000,
    atime_sec=1600000002, atime_nsec=750000000, fsid=0x0BADF00D, fileid=123456,
    rdev_major=0, rdev_minor=0, nlink=1, containerid=0x12345678,
)  # fmt: skip
DOCS_VATTR = HELLO_VATTR._replace(mode=0o40755, btype=2, size=98, fileid=654321, nlink=2)
DOCS_ENTRIES = [(b".", DOCS_FH), (b"..", ROOT_ID), (b"hello.txt", HELLO_FH)]


def _assert_zero_extras(obj, used: int) -> None:
    """The VATTR fields clfsload writes as constants decode to those constants."""
    extra = obj.vattr
    assert (extra.used, extra.flags, extra.spare, extra.dtime_sec, extra.dtime_nsec, extra.ha_version) == (
        used, 0, 0, 0, 0, 0,
    )  # fmt: skip


def test_vattr_handle_18_3() -> None:
    obj = decode_body(VATTR_HELLO, "vattr")
    assert obj.handle_types == [Obtype.VATTR]
    assert obj.vattr.vattr == HELLO_VATTR
    _assert_zero_extras(obj, used=13)
    assert obj.compression is None
    assert (obj.bmap, obj.back, obj.data, obj.name, obj.dirents) == (None, None, None, None, None)


def test_dirents_handle_18_4() -> None:
    obj = decode_body(DIRENTS_DOCS, "dirents")
    assert obj.handle_types == [Obtype.DIRENTS]
    assert obj.dirents == DOCS_ENTRIES


def test_docs_inode_body_18_5() -> None:
    obj = decode_body(DOCS_INODE_BODY, "docs")
    assert obj.handle_types == [Obtype.VATTR, Obtype.BMAP, Obtype.NAME, Obtype.DIRENTS]
    assert obj.vattr.vattr == DOCS_VATTR
    _assert_zero_extras(obj, used=98)
    assert obj.bmap.first_segment_bytes == 16384
    assert obj.bmap.other_segment_bytes == 262144
    assert obj.bmap.direct == [DOCS_FH]
    assert obj.bmap.tree_roots == [NULL_ID] * 4
    assert obj.name == b"docs"
    assert obj.dirents == DOCS_ENTRIES
    assert obj.back is None and obj.data is None and obj.databack is None


def _check_hello(obj) -> None:
    assert obj.blob == BLOB
    assert obj.handle_types == [Obtype.VATTR, Obtype.BMAP, Obtype.BACK, Obtype.NAME, Obtype.DATA]
    assert obj.vattr.vattr == HELLO_VATTR
    _assert_zero_extras(obj, used=13)
    assert (obj.bmap.first_segment_bytes, obj.bmap.other_segment_bytes) == (16384, 8388608)
    assert obj.bmap.direct == [HELLO_FH]
    assert obj.bmap.tree_roots == [NULL_ID] * 4
    assert obj.back == [DOCS_FH]
    assert obj.name == b"hello.txt"
    assert obj.data == b"Hello, CLFS!\n"
    assert obj.dirents is None and obj.extattrs is None and obj.indir is None


def test_hello_blob_uncompressed_18_6() -> None:
    obj = decode_payload(HELLO_BLOB_RAW, BLOB)
    assert obj.compression == 0
    _check_hello(obj)


def test_hello_blob_compressed_18_6() -> None:
    payload = envelope.wrap(HELLO_BLOB_RAW[4:], compress=True)
    assert payload[:11] == bytes.fromhex("0000010004224d18405077")  # envelope + frame header (§6.2)
    obj = decode_payload(payload, BLOB)
    assert obj.compression == 1
    _check_hello(obj)


def test_bucket_body_18_7() -> None:
    obj = decode_body(BUCKET_BODY, "bucket")
    assert obj.handle_types == [Obtype.EXTATTRS]
    assert obj.extattrs == [
        ("bucketCurrentNameVersion", "2"),
        ("bucketNameVersion", "2"),
        ("bucketObjVersion", "2"),
        ("bucketUUID", "00000000-0000-4000-8000-000000000000"),
    ]


def test_file_segment_18_7() -> None:
    obj = decode_body(FILE_SEGMENT_BODY, "seg")
    assert obj.handle_types == [Obtype.DATA, Obtype.DATABACK]
    assert obj.data == b"xyz"
    assert obj.databack == DataBack(ctime=1600000001, offset=16384, owner=HELLO_FH)


def test_dir_segment_18_7() -> None:
    obj = decode_body(DIR_SEGMENT_BODY, "dirseg")
    assert obj.handle_types == [Obtype.DIRENTS, Obtype.DATA, Obtype.DATABACK]
    assert obj.dirents == [(b"a", HELLO_FH)]
    assert obj.data == b""
    assert obj.databack == DataBack(ctime=1600000001, offset=16384, owner=DOCS_FH)


def test_indirect_block_18_7() -> None:
    obj = decode_body(INDIRECT_BLOCK_BODY, "indirect")
    assert obj.handle_types == [Obtype.INDIR, Obtype.DATABACK]
    assert obj.indir == [bytes(range(16)), bytes(range(16, 32))]
    assert obj.databack == DataBack(ctime=1600000001, offset=(1 << 16) + 1, owner=HELLO_FH)


def test_root_dirents_and_bmap_18_7() -> None:
    obj = decode_body(ROOT_DIRENTS + ROOT_BMAP, "root")
    assert obj.handle_types == [Obtype.DIRENTS, Obtype.BMAP]
    assert obj.dirents == [(b".", ROOT_ID), (b"..", ROOT_ID), (b"docs", DOCS_FH)]
    assert obj.bmap.direct == [ROOT_ID]
    assert (obj.bmap.first_segment_bytes, obj.bmap.other_segment_bytes) == (16384, 262144)
    assert obj.bmap.tree_roots == [NULL_ID] * 4


def test_root_extattrs_and_empty_indir() -> None:
    pairs = [("containeridEpoch", "2"), ("massUUID", "11111111-2222-4333-8444-555555555555"),
             ("wipeEpoch", "66666666-7777-4888-9999-aaaaaaaaaaaa")]  # fmt: skip
    handle = records.encode_extattrs(pairs)
    assert struct.unpack_from("<II", handle, 4) == (160, 134)  # blobCount, realCount per §18.7
    empty_indir = records.encode_indir([])
    obj = decode_body(handle + empty_indir, "root")
    assert obj.extattrs == pairs
    assert obj.indir == []  # §11.4: empty indirect blocks are legal


def test_empty_body_and_repeated_types() -> None:
    assert decode_body(b"", "empty").handle_types == []
    obj = decode_body(records.encode_name(b"first") + records.encode_name(b"second"), "twice")
    assert obj.handle_types == [Obtype.NAME, Obtype.NAME]
    assert obj.name == b"second"  # the last one wins, as in the reference


@pytest.mark.parametrize("code", [6, 13, 99, 0xFFFF])
def test_unknown_handle_type_is_skipped_with_warning(code: int) -> None:
    body = records.encode_handle(code, b"opaque") + VATTR_HELLO
    with pytest.warns(FormatWarning, match=r"skipblob: offset 0: skipping handle of unsupported"):
        obj = decode_body(body, "skipblob")
    assert obj.handle_types == [code, Obtype.VATTR]
    assert obj.vattr.vattr == HELLO_VATTR


# --- strictness --------------------------------------------------------------


def _patch(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


_BODY = HELLO_BLOB_RAW[4:]  # the hello inode body: VATTR@0 BMAP@128 BACK@264 NAME@320 DATA@360
_LZ4_HELLO = envelope.wrap(_BODY, compress=True)

BAD_BODIES = {
    "bad magic": (_patch(VATTR_HELLO, 0, "<I", 0x03016006), 0, "bad handle magic"),
    "truncated header": (VATTR_HELLO + VATTR_HELLO[:12], 128, "truncated handle header"),
    "truncated payload": (VATTR_HELLO[:100], 0, "overruns the body"),
    "blobCount mismatch": (_patch(VATTR_HELLO, 4, "<I", 136), 4, "blobCount 136 does not match realCount 108"),
    "blobCount short": (_patch(DIRENTS_DOCS, 4, "<I", 112), 4, "does not match realCount"),
    "reserved word": (_patch(VATTR_HELLO, 16, "<I", 1), 16, "reserved word"),
    "nonzero padding": (DIRENTS_DOCS[:-1] + b"\x01", 114, "nonzero handle padding"),
    "VATTR length 100": (_patch(VATTR_HELLO, 20, "<I", 100), 20, "VATTR length word is 100, expected 104"),
    "BMAP root count 3": (_patch(_BODY, 186, "<I", 3), 186, "BMAP tree-root count is 3, expected 4"),
    "BMAP direct count 0": (_patch(_BODY, 156, "<I", 0), 156, "direct count is 0"),
    "BMAP direct id overrun": (_patch(_BODY, 160, "<H", 300), 160, "BMAP direct id of 300 bytes overruns"),
    "lp16 overrun in BACK": (_patch(_BODY, 288, "<H", 25), 288, "BACK backpointer of 25 bytes overruns"),
    "BACK count too large": (_patch(_BODY, 284, "<I", 2), 314, "BACK backpointer length of 2 bytes overruns"),
    "lp32 overrun in NAME": (_patch(_BODY, 340, "<I", 10), 340, "NAME name of 10 bytes overruns"),
    "lp32 short in DATA": (_patch(_BODY, 380, "<I", 12), 396, "DATA has 1 unparsed trailing bytes"),
    "dirent fh overrun": (_patch(DIRENTS_DOCS, 25, "<H", 99), 20, "DIRENTS entry"),
    "dirent name overrun": (_patch(DIRENTS_DOCS, 20, "<I", 500), 20, "DIRENTS entry"),
    "DATABACK too long": (
        records.encode_handle(Obtype.DATABACK, struct.pack("<IQH", 1, 2, 24) + HELLO_FH + b"\0\0\0\0"),
        58, "DATABACK has 4 unparsed trailing bytes",
    ),
    "DATABACK owner short": (
        records.encode_handle(Obtype.DATABACK, struct.pack("<IQH", 1, 2, 24) + HELLO_FH[:20]),
        32, "DATABACK owner of 24 bytes overruns",
    ),
    "garbage in VATTR": (
        records.encode_handle(Obtype.VATTR, VATTR_HELLO[20:] + b"\0"), 128, "VATTR has 1 unparsed trailing bytes"),
    "EXTATTRS not UTF-8": (
        records.encode_handle(Obtype.EXTATTRS, struct.pack("<II", 1, 1) + b"\xff" + struct.pack("<I", 0)),
        24, "EXTATTRS key is not UTF-8",
    ),
    "INDIR count over 4096": (records.encode_handle(Obtype.INDIR, struct.pack("<I", 4097)), 20, "pointer count 4097"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_corrupt_body_raises_format_error(case: str) -> None:
    body, offset, message = BAD_BODIES[case]
    with pytest.raises(FormatError) as info:
        decode_body(body, "corrupt-blob")
    text = str(info.value)
    assert text.startswith("corrupt-blob: offset %d: " % offset), text
    assert message in text
    assert "\n" not in text


BAD_PAYLOADS = {
    "shorter than envelope": (b"\0\0", "shorter than the 4-byte envelope"),
    "encryption mode 1": (b"\x01\x00\x00\x00" + _BODY, "encryption mode 1"),
    "encryption mode 2 with LZ4": (b"\x02\x00" + _LZ4_HELLO[2:], "encryption mode 2"),
    "unknown compression 2": (b"\x00\x00\x02\x00" + _BODY, "unknown compression mode 2"),
    "raw body flagged LZ4": (b"\x00\x00\x01\x00" + _BODY, "LZ4"),
    "truncated LZ4 frame": (_LZ4_HELLO[:-10], "LZ4"),
    "LZ4 frame without end mark": (_LZ4_HELLO[:-4], "LZ4"),
    "garbage after frame": (_LZ4_HELLO + b"junk", "bytes follow the LZ4 frame"),
    "raw body truncated": (HELLO_BLOB_RAW[:-8], "overruns the body"),
}


@pytest.mark.parametrize("case", sorted(BAD_PAYLOADS))
def test_corrupt_payload_raises_format_error(case: str) -> None:
    payload, message = BAD_PAYLOADS[case]
    with pytest.raises(FormatError) as info:
        decode_payload(payload, "bad-payload")
    text = str(info.value)
    assert text.startswith("bad-payload: "), text
    assert "offset" in text and message in text, text
    assert "\n" not in text


def test_format_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode_body(b"\0" * 20)


@settings(max_examples=300, deadline=None)
@given(
    cut=st.integers(0, len(_BODY) - 1),
    flips=st.lists(st.tuples(st.integers(0, len(_BODY) - 1), st.integers(1, 255)), max_size=3),
)
def test_mangled_bodies_decode_or_raise_format_error(cut: int, flips: list) -> None:
    """Truncations and byte flips never escape as anything but FormatError."""
    body = bytearray(_BODY)
    for offset, xor in flips:
        body[offset] ^= xor
    for candidate in (bytes(body), bytes(body[:cut])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FormatWarning)
            try:
                decode_body(candidate, "fuzz")
            except FormatError as exc:
                assert str(exc).startswith("fuzz: offset ")
