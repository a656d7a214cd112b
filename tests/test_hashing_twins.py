"""clfsload._native.hashing: its two twins against each other (Hypothesis) and the
fixed vectors of the format spec (§3, §4, §18.2)."""

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from clfsload.clfs.constants import BUCKET_ID, INPROGRESS_ID, NULL_FH, ORPHAN_PARENT_ID, ROOT_ID, Btype
from clfsload.errors import EncodeError

from _spec_vectors import DOCS_FH, HELLO_FH
from _twins import FAST, IDS, KINDS, bytes_like, raises_same, same


# --- hashing (§3, §4) --------------------------------------------------------------


@pytest.mark.parametrize(
    "data, fnv, murmur",
    [
        (b"", 0, 0x69C2EB67),
        (b"a", 0x00000061, 0x45FC3030),
        (b"ab", 0x610098D1, None),
        (b"abcd", None, 0x339E626E),
        (b"abcde", None, 0xC510708F),
    ],
)
def test_hash_vectors_3(impl, data, fnv, murmur):
    hashing = impl("hashing")
    if fnv is not None:
        assert hashing.fnv1_variant(data) == fnv
    if murmur is not None:
        assert hashing.murmur2(data) == murmur


@pytest.mark.parametrize(
    "obj_id, expected",
    [
        (ROOT_ID, 0x0000006457871C6B),
        (BUCKET_ID, 0x0000006310A0AE41),
        (INPROGRESS_ID, 0x00000062BAE79F98),
        (ORPHAN_PARENT_ID, 0x0000006663F1233C),
        (NULL_FH, 0x0000000087020A51),
        (DOCS_FH, 0x8CD16A362DE4529F),  # §18.1
        (HELLO_FH, 0xC03B0E4DB547D190),
    ],
)
def test_hash64_table_3_3(impl, obj_id, expected):
    assert impl("hashing").hash64(obj_id) == expected


SEGMENT_ID = bytes.fromhex("00112233445546778899AABBCCDDEEFF")


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            (ROOT_ID, Btype.DIR, ROOT_ID),
            "0000006457871C6B_00000000000000000000000000000064.0002.0000006457871C6B.00000000009.FFFFFFFF.0002",
        ),
        (  # the root forces owner = root and btype = DIR
            (ROOT_ID, Btype.REG, INPROGRESS_ID, 9),
            "0000006457871C6B_00000000000000000000000000000064.0002.0000006457871C6B.00000000009.FFFFFFFF.0002",
        ),
        (
            (DOCS_FH, Btype.DIR, ROOT_ID),
            "8CD16A362DE4529F_11CF8A4600010100E9030000000000001111111111111111"
            ".0002.0000006457871C6B.00000000009.FFFFFFFF.0002",
        ),
        (
            (HELLO_FH, Btype.REG, DOCS_FH),
            "C03B0E4DB547D190_11CF8A4601010200EA03000000000000EFCDAB8967452301"
            ".0001.8CD16A362DE4529F.00000000009.FFFFFFFF.0002",
        ),
        (
            (HELLO_FH, Btype.REG, INPROGRESS_ID),
            "C03B0E4DB547D190_11CF8A4601010200EA03000000000000EFCDAB8967452301"
            ".0001.00000062BAE79F98.00000000009.FFFFFFFF.0002",
        ),
        (
            (HELLO_FH, Btype.REG, DOCS_FH, 11),
            "C03B0E4DB547D190_11CF8A4601010200EA03000000000000EFCDAB8967452301"
            ".0001.8CD16A362DE4529F.00000000011.FFFFFFFF.0002",
        ),
        (
            (SEGMENT_ID, Btype.SEGMENT, HELLO_FH),
            "E3F5544039DDA71F_00112233445546778899AABBCCDDEEFF.0008.C03B0E4DB547D190.00000000009.FFFFFFFF.0002",
        ),
        (
            (SEGMENT_ID, Btype.INDIRECT, HELLO_FH),
            "E3F5544039DDA71F_00112233445546778899AABBCCDDEEFF.0009.C03B0E4DB547D190.00000000009.FFFFFFFF.0002",
        ),
    ],
)
def test_blob_names_18_2(impl, args, expected):
    hashing = impl("hashing")
    assert hashing.blob_name(*args) == expected
    assert expected.startswith(hashing.name_prefix(args[0]))


def test_bucket_name_18_2(impl):
    hashing = impl("hashing")
    name = "00000063_00000000000000000000000000000063.00000000009.FFFFFFFF.0001"
    assert hashing.bucket_blob_name() == name
    assert hashing.name_prefix(BUCKET_ID) == "00000063_00000000000000000000000000000063."


@FAST
@given(data=st.one_of(IDS, st.binary(max_size=300)), kind=KINDS)
@example(data=b"\x00" * 65535, kind="bytes")
@example(data=b"\xff" * 65536, kind="memoryview")
def test_hashes_differential(twins, data, kind):
    py, c = twins("hashing")
    value = bytes_like(data, kind)
    for name in ("fnv1_variant", "murmur2", "hash64", "name_prefix"):
        same(getattr(py, name), getattr(c, name), value)


@FAST
@given(
    obj_id=IDS,
    kind=KINDS,
    btype=st.one_of(st.integers(-3, 10003), st.sampled_from(list(Btype)), st.just(True), st.floats(-2, 10001)),
    owner=IDS,
    version=st.one_of(st.integers(-2, 10**11 + 2), st.sampled_from([0, 9, 11, 99999999999, 10**11, -1, 9.0])),
)
@example(obj_id=ROOT_ID, kind="bytearray", btype=-5, owner=b"", version=9)
def test_blob_name_differential(twins, obj_id, kind, btype, owner, version):
    py, c = twins("hashing")
    same(py.blob_name, c.blob_name, bytes_like(obj_id, kind), btype, owner, version)
    same(py.bucket_blob_name, c.bucket_blob_name, version)


def test_hashing_errors(twins):
    py, c = twins("hashing")
    for bad in ("text", None, 3.5, memoryview(b"abcdef")[::2], [1, 2, 3], 7):
        for name in ("fnv1_variant", "murmur2", "hash64", "name_prefix"):
            same(getattr(py, name), getattr(c, name), bad)
    raises_same(py.blob_name, c.blob_name, EncodeError, HELLO_FH, 10000, DOCS_FH)
    raises_same(py.blob_name, c.blob_name, EncodeError, HELLO_FH, 1, DOCS_FH, 10**11)
    raises_same(py.blob_name, c.blob_name, TypeError, HELLO_FH, 1, None)
    raises_same(py.bucket_blob_name, c.bucket_blob_name, EncodeError, -1)
