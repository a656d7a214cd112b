"""clfsload._native.records: its two twins against each other (Hypothesis) and the
fixed vectors of the format spec (§7-§9, §18.3-§18.7)."""


import random

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from clfsload.clfs.constants import DIR_OTHER_SEGMENT_BYTES, NULL_ID, ROOT_ID, Btype, Obtype
from clfsload.clfs.vattr import VAttr
from clfsload.errors import EncodeError

from _spec_vectors import (
    DOCS_FH,
    HELLO_FH,
    VATTR_HELLO,
    DIRENTS_DOCS,
    DOCS_INODE_BODY,
    BUCKET_BODY,
    FILE_SEGMENT_BODY,
    DIR_SEGMENT_BODY,
    ROOT_DIRENTS,
    ROOT_BMAP,
    HELLO_BLOB_RAW as HELLO_BLOB,
    INDIRECT_BLOCK_BODY as INDIRECT_BODY,
)
from _twins import (
    BAD_VALUES,
    DOCS_ATTRS,
    DOCS_ENTRIES,
    FAST,
    HELLO_ATTRS,
    IDS,
    KINDS,
    SEGMENT_IDS,
    TREE_ROOTS,
    VATTRS,
    VATTR_BITS,
    bytes_like,
    pattern,
    raises_same,
    same,
    same_fresh,
)


# --- records (§7-§9) ---------------------------------------------------------------

def test_vattr_18_3(impl):
    records = impl("records")
    assert records.encode_vattr(HELLO_ATTRS) == VATTR_HELLO
    assert records.encode_vattr(list(HELLO_ATTRS)) == VATTR_HELLO


def test_dirents_18_4(impl):
    entries = impl("dirents").pack_entries(DOCS_ENTRIES)
    assert len(entries) == 94
    assert impl("records").encode_dirents(entries) == DIRENTS_DOCS


def test_docs_inode_18_5(impl):
    entries = impl("dirents").pack_entries(DOCS_ENTRIES)
    body = impl("records").encode_dir_inode(DOCS_ATTRS, DOCS_FH, [], [], b"docs", entries)
    assert body == DOCS_INODE_BODY


def test_hello_blob_18_6(impl):
    body = impl("records").encode_file_inode(
        HELLO_ATTRS, HELLO_FH, [], [], [DOCS_FH], b"hello.txt", b"Hello, CLFS!\n"
    )
    envelope = impl("envelope")
    assert envelope.wrap(body, compress=False) == HELLO_BLOB
    compressed = envelope.wrap(body)
    assert compressed[:11] == bytes.fromhex("0000010004224d18405077")
    assert len(compressed) <= len(HELLO_BLOB) and compressed[-4:] == bytes(4)
    assert envelope.unwrap(compressed) == body
    assert envelope.unwrap(HELLO_BLOB) == body


def test_other_handles_18_7(impl):
    records = impl("records")
    bucket_attrs = [
        ("bucketCurrentNameVersion", "2"),
        ("bucketNameVersion", "2"),
        ("bucketObjVersion", "2"),
        ("bucketUUID", "00000000-0000-4000-8000-000000000000"),
    ]
    assert records.encode_extattrs(bucket_attrs) == BUCKET_BODY
    assert records.encode_file_segment(b"xyz", 1600000001, 16384, HELLO_FH) == FILE_SEGMENT_BODY
    entry = impl("dirents").pack_entries([(b"a", HELLO_FH)])
    assert records.encode_dir_segment(entry, 1600000001, 16384, DOCS_FH) == DIR_SEGMENT_BODY
    ids = [bytes(range(16)), bytes(range(16, 32))]
    assert records.encode_indirect_block(ids, 1600000001, (1 << 16) + 1, HELLO_FH) == INDIRECT_BODY
    root_entries = impl("dirents").pack_entries([(b".", ROOT_ID), (b"..", ROOT_ID), (b"docs", DOCS_FH)])
    assert records.encode_dirents(root_entries) == ROOT_DIRENTS
    assert records.encode_bmap(ROOT_ID, [], [NULL_ID] * 4, DIR_OTHER_SEGMENT_BYTES) == ROOT_BMAP
    root_ext = records.encode_extattrs(
        [
            ("containeridEpoch", "2"),
            ("massUUID", "11111111-2222-4333-8444-555555555555"),
            ("wipeEpoch", "66666666-7777-4888-9999-aaaaaaaaaaaa"),
        ]
    )
    assert root_ext[4:12] == bytes.fromhex("a0000000" "86000000")  # blobCount 160, realCount 134
    # the root inode: VATTR, BMAP, NAME, DIRENTS, EXTATTRS last
    root = records.encode_dir_inode(DOCS_ATTRS, ROOT_ID, [], [], b"src", root_entries, [("containeridEpoch", "2")])
    assert root[128 : 128 + len(ROOT_BMAP)] == ROOT_BMAP
    assert root.endswith(records.encode_extattrs([("containeridEpoch", "2")]))


@FAST
@given(payload=st.binary(max_size=600), kind=KINDS, obtype=st.one_of(st.sampled_from(list(Obtype)), st.integers(0, 2**32 - 1)))
@example(payload=b"", kind="bytes", obtype=Obtype.DATA)
def test_single_handles_differential(twins, payload, kind, obtype):
    py, c = twins("records")
    value = bytes_like(payload, kind)
    same(py.encode_handle, c.encode_handle, obtype, value)
    for name in ("encode_data", "encode_dirents", "encode_name"):
        same(getattr(py, name), getattr(c, name), value)


@FAST
@given(attrs=VATTRS, as_list=st.booleans())
@example(attrs=tuple((1 << bits) - 1 for bits in VATTR_BITS), as_list=False)
@example(attrs=(0,) * 17, as_list=True)
def test_vattr_differential(twins, attrs, as_list):
    py, c = twins("records")
    value = list(attrs) if as_list else VAttr(*attrs)
    result = same(py.encode_vattr, c.encode_vattr, value)
    assert result[0] == "ok" and len(result[2]) == 128


@FAST
@given(attrs=VATTRS, index=st.integers(0, 16), bad=BAD_VALUES, edge=st.booleans())
def test_vattr_out_of_range_raises_the_same(twins, attrs, index, bad, edge):
    py, c = twins("records")
    values = list(attrs)
    values[index] = 1 << VATTR_BITS[index] if edge else bad
    raises_same(py.encode_vattr, c.encode_vattr, EncodeError, values)


def test_vattr_shape_errors(twins):
    py, c = twins("records")
    raises_same(py.encode_vattr, c.encode_vattr, EncodeError, list(HELLO_ATTRS)[:-1])
    raises_same(py.encode_vattr, c.encode_vattr, EncodeError, list(HELLO_ATTRS) + [0])
    raises_same(py.encode_vattr, c.encode_vattr, TypeError, 5)
    # bool and IntEnum are ints
    values = list(HELLO_ATTRS)
    values[1], values[15] = Btype.LNK, True
    assert same(py.encode_vattr, c.encode_vattr, values)[0] == "ok"


@FAST
@given(
    fh=IDS,
    kind=KINDS,
    segment_ids=SEGMENT_IDS,
    roots=TREE_ROOTS,
    other=st.one_of(st.sampled_from([8388608, 262144, 0, 2**32 - 1, 2**32, -1]), st.integers(0, 2**32 - 1)),
)
def test_bmap_differential(twins, fh, kind, segment_ids, roots, other):
    py, c = twins("records")
    same(py.encode_bmap, c.encode_bmap, bytes_like(fh, kind), segment_ids, roots, other)
    same(py.encode_bmap, c.encode_bmap, fh, tuple(segment_ids), tuple(roots))


@pytest.mark.parametrize("count", [0, 1, 1022, 1023, 1024, 1500])
def test_bmap_direct_segment_limit(twins, count):
    py, c = twins("records")
    segment_ids = [i.to_bytes(16, "little") for i in range(count)]
    result = same(py.encode_bmap, c.encode_bmap, HELLO_FH, segment_ids, [NULL_ID] * 4)
    assert (result[0] == "ok") == (count <= 1023)
    same(py.encode_file_inode, c.encode_file_inode, HELLO_ATTRS, HELLO_FH, segment_ids, [], [DOCS_FH], b"f", b"")


@pytest.mark.parametrize("length", [0, 16, 24, 65535, 65536])
def test_id_lengths(twins, length):
    """ids of 0..65535 bytes are fine everywhere; 65536 raises EncodeError in both."""
    py, c = twins("records")
    big = bytes(range(256)) * (length // 256) + bytes(length % 256)
    for fn, args in [
        ("encode_bmap", (big, [big], [NULL_ID, NULL_ID, big, NULL_ID])),
        ("encode_indir", ([NULL_ID, big],)),
        ("encode_back", ([big],)),
        ("encode_databack", (1, 2, big)),
        ("encode_file_inode", (HELLO_ATTRS, big, [], [], [big], b"n", None)),
        ("encode_dir_inode", (DOCS_ATTRS, big, [big], [], b"n", b"")),
        ("encode_file_segment", (b"x", 1, 2, big)),
        ("encode_dir_segment", (b"", 1, 2, big)),
        ("encode_indirect_block", ([big], 1, 2, big)),
    ]:
        result = same(getattr(py, fn), getattr(c, fn), *args)
        assert (result[0] == "ok") == (length <= 65535), fn
        if result[0] == "raised":
            assert result[1] is EncodeError


@FAST
@given(ids=st.lists(IDS, max_size=20), kind=KINDS, as_iter=st.booleans())
def test_indir_back_differential(twins, ids, kind, as_iter):
    py, c = twins("records")
    values = [bytes_like(i, kind) for i in ids]
    for name in ("encode_indir", "encode_back"):
        same_fresh(getattr(py, name), getattr(c, name), lambda: (iter(values) if as_iter else values,))


CTIMES = st.one_of(st.sampled_from([0, 1, 2**32 - 1, 2**32, -1, 1.5, None]), st.integers(0, 2**32 - 1))
OFFSETS = st.one_of(st.sampled_from([0, 2**64 - 1, 2**64, -1, 2.0]), st.integers(0, 2**64 - 1))


@FAST
@given(ctime=CTIMES, offset=OFFSETS, owner=IDS, kind=KINDS)
def test_databack_differential(twins, ctime, offset, owner, kind):
    py, c = twins("records")
    same(py.encode_databack, c.encode_databack, ctime, offset, bytes_like(owner, kind))


@FAST
@given(pairs=st.lists(st.tuples(st.text(max_size=40), st.text(max_size=40)), max_size=8))
def test_extattrs_differential(twins, pairs):
    py, c = twins("records")
    same(py.encode_extattrs, c.encode_extattrs, pairs)
    same_fresh(py.encode_extattrs, c.encode_extattrs, lambda: (iter(pairs),))


def test_extattrs_errors(twins):
    py, c = twins("records")
    raises_same(py.encode_extattrs, c.encode_extattrs, UnicodeEncodeError, [("key", "\ud800")])
    raises_same(py.encode_extattrs, c.encode_extattrs, AttributeError, [(b"key", "v")])
    raises_same(py.encode_extattrs, c.encode_extattrs, ValueError, [("key",)])
    raises_same(py.encode_extattrs, c.encode_extattrs, TypeError, None)


# data up to 16 KiB for inodes: small binaries, plus sized patterns
INODE_DATA = st.one_of(
    st.none(),
    st.binary(max_size=200),
    st.builds(pattern, st.sampled_from([0, 1, 1024, 4096, 8192, 16383, 16384]), st.integers(0, 99), st.just("text")),
)


@FAST
@given(
    attrs=VATTRS,
    fh=IDS,
    segment_ids=SEGMENT_IDS,
    roots=TREE_ROOTS,
    backs=st.lists(IDS, max_size=5),
    name=st.binary(max_size=300),
    data=INODE_DATA,
    kind=KINDS,
)
def test_file_inode_differential(twins, attrs, fh, segment_ids, roots, backs, name, data, kind):
    py, c = twins("records")
    if data is not None:
        data = bytes_like(data, kind)
    same(py.encode_file_inode, c.encode_file_inode, attrs, fh, segment_ids, roots, backs, bytes_like(name, kind), data)


@FAST
@given(
    attrs=VATTRS,
    fh=IDS,
    segment_ids=SEGMENT_IDS,
    roots=TREE_ROOTS,
    name=st.binary(max_size=300),
    entries=st.binary(max_size=400),
    extattrs=st.one_of(st.none(), st.lists(st.tuples(st.text(max_size=12), st.text(max_size=40)), max_size=4)),
    kind=KINDS,
)
def test_dir_inode_differential(twins, attrs, fh, segment_ids, roots, name, entries, extattrs, kind):
    py, c = twins("records")
    same(
        py.encode_dir_inode, c.encode_dir_inode, attrs, fh, segment_ids, roots, name, bytes_like(entries, kind), extattrs
    )


@FAST
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.builds(pattern, st.sampled_from([65535, 65536, 70000, 262144]), st.integers(0, 9), st.just("random")),
    ),
    ctime=CTIMES,
    offset=OFFSETS,
    owner=IDS,
    ids=st.lists(IDS, max_size=6),
    kind=KINDS,
)
def test_segments_differential(twins, data, ctime, offset, owner, ids, kind):
    py, c = twins("records")
    value = bytes_like(data, kind)
    same(py.encode_file_segment, c.encode_file_segment, value, ctime, offset, owner)
    same(py.encode_dir_segment, c.encode_dir_segment, value, ctime, offset, owner)
    same(py.encode_indirect_block, c.encode_indirect_block, ids, ctime, offset, owner)


def test_records_errors(twins):
    py, c = twins("records")
    roots = [NULL_ID] * 4
    raises_same(py.encode_bmap, c.encode_bmap, EncodeError, HELLO_FH, [], roots[:3])
    raises_same(py.encode_bmap, c.encode_bmap, EncodeError, HELLO_FH, [], roots + roots[:1])
    raises_same(py.encode_bmap, c.encode_bmap, TypeError, HELLO_FH, [b"ok", 5], roots)
    raises_same(py.encode_bmap, c.encode_bmap, TypeError, HELLO_FH, [b"ok", "text"], roots)
    raises_same(py.encode_handle, c.encode_handle, TypeError, Obtype.DATA, [1, 2])
    raises_same(py.encode_handle, c.encode_handle, Exception, -1, b"x")  # struct.error in both
    raises_same(py.encode_data, c.encode_data, TypeError, 5)
    raises_same(py.encode_name, c.encode_name, TypeError, "name")
    raises_same(py.encode_databack, c.encode_databack, EncodeError, 2**32, 0, HELLO_FH)
    raises_same(py.encode_databack, c.encode_databack, EncodeError, 0, 2**64, HELLO_FH)
    raises_same(py.encode_databack, c.encode_databack, TypeError, None, 0, HELLO_FH)
    raises_same(py.encode_file_inode, c.encode_file_inode, EncodeError, HELLO_ATTRS, HELLO_FH, [], roots[:2], [], b"", None)
    raises_same(py.encode_file_inode, c.encode_file_inode, TypeError, HELLO_ATTRS, HELLO_FH, [], [], [], b"", 7)
    raises_same(py.encode_dir_inode, c.encode_dir_inode, AttributeError, DOCS_ATTRS, DOCS_FH, [], [], b"", b"", [("k", 1)])
    # the pure twins accept what bytes() accepts; so do the compiled ones
    assert same(py.encode_data, c.encode_data, [104, 105])[0] == "ok"
    assert same(py.encode_dirents, c.encode_dirents, 3)[0] == "ok"
    assert same(py.encode_back, c.encode_back, [[1, 2], bytearray(b"xy")])[0] == "ok"


def test_file_segment_parts_is_the_segment_of_their_concatenation(twins):
    """A segment read in pieces encodes to the body of its joined bytes, in both twins; bad pieces raise alike."""
    py, c = twins("records")
    rng = random.Random(7)
    owner = bytes(range(24))
    for sizes in ([], [0], [5], [1 << 20] * 3, [1, 0, 65536, 3], [rng.randrange(1 << 16) for _ in range(9)]):
        parts = [bytes(rng.getrandbits(8) for _ in range(min(n, 64))) * (n // 64) + bytes(n % 64) for n in sizes]
        mixed = [bytearray(p) if i % 3 == 1 else memoryview(p) if i % 3 == 2 else p for i, p in enumerate(parts)]
        joined = py.encode_file_segment(b"".join(parts), 1234, 8 << 20, owner)
        for twin in (py, c):
            assert twin.encode_file_segment_parts(parts, 1234, 8 << 20, owner) == joined
            assert twin.encode_file_segment_parts(tuple(mixed), 1234, 8 << 20, owner) == joined
    for bad in ([b"a", "text"], [b"a", 3], None):
        same(py.encode_file_segment_parts, c.encode_file_segment_parts, bad, 1, 2, owner)
    same(py.encode_file_segment_parts, c.encode_file_segment_parts, [b"x"], -1, 2, owner)
    same(py.encode_file_segment_parts, c.encode_file_segment_parts, [b"x"], 1, 2, b"o" * 70000)


def test_file_segment_parts_with_a_prefix(twins):
    """``prefix`` goes before the body in the same result, whatever bytes-like it is; anything else raises alike."""
    py, c = twins("records")
    owner = bytes(range(24))
    parts = [random.Random(3).randbytes(1000), b"", b"tail" * 300]
    body = py.encode_file_segment(b"".join(parts), 99, 8 << 20, owner)
    for prefix in (b"", b"\0\0\0\0", bytearray(b"head"), memoryview(b"xyz" * 100)):
        for twin in (py, c):
            assert twin.encode_file_segment_parts(parts, 99, 8 << 20, owner, prefix) == bytes(prefix) + body
    for bad in ("text", 4, None, [1, 2]):
        raises_same(py.encode_file_segment_parts, c.encode_file_segment_parts, TypeError, parts, 99, 8 << 20, owner,
                    bad)
