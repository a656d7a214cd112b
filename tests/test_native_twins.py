"""The compiled twins of the hot paths against their pure-Python twins, the specification.

* Differential tests: Hypothesis inputs, the compiled result must equal the
  pure one byte for byte, or both must raise the same exception class (and,
  for clfsload's own errors, the same message).
* Cross round trips: wrap/pack with one twin, unwrap/unpack with the other.
* Fixed vectors from the format spec (§3, §18) against both twins.
* The selector: CLFSLOAD_NO_EXTENSIONS picks the pure twins, the default the
  compiled ones.
"""

import inspect
import os
import random
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import xxhash
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import clfsload
import clfsload._native
from clfsload.clfs.constants import (
    BUCKET_ID,
    DIR_FIRST_SEGMENT_LIMIT,
    DIR_OTHER_SEGMENT_BYTES,
    INPROGRESS_ID,
    LZ4_CHUNK,
    NULL_FH,
    NULL_ID,
    ORPHAN_PARENT_ID,
    ROOT_ID,
    Btype,
    Obtype,
)
from clfsload.clfs.vattr import VAttr
from clfsload.errors import ClfsLoadError, EncodeError, FormatError

from _spec_vectors import (
    DOCS_FH, HELLO_FH, VATTR_HELLO, DIRENTS_DOCS, DOCS_INODE_BODY, BUCKET_BODY, FILE_SEGMENT_BODY, DIR_SEGMENT_BODY, ROOT_DIRENTS, ROOT_BMAP, HELLO_BLOB_RAW as HELLO_BLOB, INDIRECT_BLOCK_BODY as INDIRECT_BODY,
)


TOPICS = ("checksum", "dirents", "envelope", "hashing", "records")

# Hypothesis: enough examples for the edge cases, the whole module well under a minute.
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- helpers -----------------------------------------------------------------


def outcome(fn, *args, **kwargs):
    """What a call gives: ("ok", type, value) or ("raised", class, message of our own errors)."""
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - comparing what each twin raises
        return ("raised", type(exc), str(exc) if isinstance(exc, ClfsLoadError) else None)
    return ("ok", type(result), result)


def same(py_fn, c_fn, *args, **kwargs):
    """Call both twins with the same arguments; their outcomes must be identical."""
    expected = outcome(py_fn, *args, **kwargs)
    got = outcome(c_fn, *args, **kwargs)
    assert got == expected
    return expected


def same_fresh(py_fn, c_fn, make_args):
    """As :func:`same`, with arguments made afresh for each twin (for iterators)."""
    expected = outcome(py_fn, *make_args())
    assert outcome(c_fn, *make_args()) == expected
    return expected


def raises_same(py_fn, c_fn, error, *args, **kwargs):
    """Both twins raise ``error`` (same class, same message for our own errors)."""
    result = same(py_fn, c_fn, *args, **kwargs)
    assert result[0] == "raised" and issubclass(result[1], error), result
    return result


def hexdump(text):
    return bytes.fromhex(" ".join(text.split()))


def pattern(size, seed, kind):
    """Reproducible bodies: "text" compresses, "random" does not, "mixed" is random first."""
    rng = random.Random(seed)
    if kind == "zeros":
        return bytes(size)
    if kind == "random":
        return rng.randbytes(size)
    if kind == "mixed":
        head = rng.randbytes(min(size, LZ4_CHUNK))
        return head + pattern(size - len(head), seed, "text")
    words = [rng.randbytes(rng.randint(1, 6)).hex().encode() for _ in range(64)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


def bytes_like(data, kind):
    return {"bytes": bytes, "bytearray": bytearray, "memoryview": memoryview}[kind](data)


KINDS = st.sampled_from(["bytes", "bytearray", "memoryview"])
IDS = st.one_of(
    st.just(b""),
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=24, max_size=24),
    st.binary(max_size=40),
    st.sampled_from([ROOT_ID, BUCKET_ID, INPROGRESS_ID, ORPHAN_PARENT_ID, NULL_FH, NULL_ID]),
)
VATTR_BITS = (16, 8, 32, 32, 64, 32, 32, 32, 32, 32, 32, 64, 64, 32, 32, 32, 64)


def _field(bits):
    return st.one_of(st.just(0), st.just((1 << bits) - 1), st.integers(0, (1 << bits) - 1))


VATTRS = st.tuples(*[_field(bits) for bits in VATTR_BITS])
BAD_VALUES = st.one_of(
    st.just(-1),
    st.integers(max_value=-1),
    st.integers(min_value=1 << 64, max_value=1 << 80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
    st.text(max_size=3),
)
SEGMENT_IDS = st.lists(st.binary(min_size=16, max_size=16), max_size=12)
TREE_ROOTS = st.one_of(st.just([]), st.lists(IDS, min_size=4, max_size=4), st.lists(IDS, max_size=6))
# §18: run values and the example tree
HELLO_ATTRS = VAttr(
    mode=0o100644, btype=Btype.REG, uid=1000, gid=1000, size=13,
    mtime_sec=1600000000, mtime_nsec=250000000, ctime_sec=1600000001, ctime_nsec=500000000,
    atime_sec=1600000002, atime_nsec=750000000, fsid=0x0BADF00D, fileid=123456,
    rdev_major=0, rdev_minor=0, nlink=1, containerid=0x12345678,
)  # fmt: skip
DOCS_ATTRS = HELLO_ATTRS._replace(mode=0o40755, btype=Btype.DIR, size=98, fileid=654321, nlink=2)
DOCS_ENTRIES = [(b".", DOCS_FH), (b"..", ROOT_ID), (b"hello.txt", HELLO_FH)]


# --- the twins and the selector ----------------------------------------------


@pytest.mark.parametrize("topic", TOPICS)
def test_same_public_surface(twins, topic):
    """Same ``__all__``, same parameter names, kinds and defaults, docstrings on every callable."""
    py, c = twins(topic)
    assert list(c.__all__) == list(py.__all__)
    for name in py.__all__:
        py_params = [(p.name, p.kind, p.default) for p in inspect.signature(getattr(py, name)).parameters.values()]
        c_params = [(p.name, p.kind, p.default) for p in inspect.signature(getattr(c, name)).parameters.values()]
        assert c_params == py_params, name
        assert getattr(c, name).__doc__, name


@pytest.mark.parametrize("topic", TOPICS)
def test_selector_exports_the_loaded_twin(topic):
    selector = __import__("clfsload._native.%s" % topic, fromlist=["IMPLEMENTATION"])
    module = selector.IMPLEMENTATION
    assert module.__name__ == "clfsload._native.%s_%s" % (topic, "c" if clfsload._native._compat.LOADED[topic] == "cython" else "py")
    for name in module.__all__:
        assert getattr(selector, name) is getattr(module, name)


def _backend_in_subprocess(**env_changes):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLFSLOAD_")}
    env.update(env_changes)
    root = os.path.dirname(os.path.dirname(os.path.abspath(clfsload.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    code = "import clfsload._native as n; print(n.BACKEND, *sorted(n._compat.LOADED.items()))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return done.stdout.split()[0]


def test_no_extensions_env_selects_pure_twins():
    assert _backend_in_subprocess(CLFSLOAD_NO_EXTENSIONS="1") == "python"


@pytest.mark.c_extension
def test_compiled_twins_preferred_by_default(c_skip_reason):
    if c_skip_reason:
        pytest.skip(c_skip_reason)
    assert _backend_in_subprocess() == "cython"
    assert _backend_in_subprocess(CLFSLOAD_REQUIRE_EXTENSIONS="1") == "cython"


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


# --- dirents (§8.2, §12) -----------------------------------------------------------

ENTRIES = st.lists(st.tuples(st.binary(max_size=64), IDS), max_size=40)


def sized_entries(name_lengths, seed):
    """Entries of 30 + n bytes (24-byte fhs) with reproducible names."""
    rng = random.Random(seed)
    return [(rng.randbytes(n), rng.randbytes(24)) for n in name_lengths]


@FAST
@given(entries=ENTRIES, kind=KINDS)
def test_pack_unpack_differential(twins, entries, kind):
    py, c = twins("dirents")
    values = [(bytes_like(n, kind), bytes_like(f, kind)) for n, f in entries]
    packed = same(py.pack_entries, c.pack_entries, values)[2]
    assert same_fresh(py.pack_entries, c.pack_entries, lambda: (iter(values),))[2] == packed
    unpacked = same(py.unpack_entries, c.unpack_entries, bytes_like(packed, kind))[2]
    assert unpacked == [(bytes(n), bytes(f)) for n, f in values]
    # cross round trips
    assert c.unpack_entries(py.pack_entries(values)) == py.unpack_entries(c.pack_entries(values)) == unpacked


@SLOW
@given(
    name_lengths=st.lists(
        st.one_of(st.integers(0, 255), st.integers(0, 20000), st.sampled_from([16330, 16331, 16329])), max_size=60
    ),
    seed=st.integers(0, 2**16),
)
def test_split_differential(twins, name_lengths, seed):
    py, c = twins("dirents")
    entries = sized_entries(name_lengths, seed)
    segments = same(py.split_entries, c.split_entries, entries)[2]
    assert b"".join(segments) == py.pack_entries(entries)
    assert len(segments[0]) <= DIR_FIRST_SEGMENT_LIMIT or len(py.unpack_entries(segments[0])) == 1
    for segment in segments[1:]:
        assert len(segment) <= DIR_OTHER_SEGMENT_BYTES or len(py.unpack_entries(segment)) == 1


@pytest.mark.parametrize("seed", range(4))
def test_split_many_segments(twins, seed):
    """About 1.5 MB of entries of mixed sizes: many 262,144-byte segments."""
    py, c = twins("dirents")
    rng = random.Random(seed)
    entries = sized_entries([rng.choice([0, 5, 40, 255, 3000, 20000]) for _ in range(400)], seed)
    segments = same(py.split_entries, c.split_entries, entries)[2]
    assert len(segments) > 4 and b"".join(segments) == c.pack_entries(entries)
    assert c.unpack_entries(b"".join(segments)) == py.unpack_entries(py.pack_entries(entries)) == entries


@FAST
@given(
    name_lengths=st.lists(st.integers(0, 300), max_size=30),
    seed=st.integers(0, 99),
    first=st.integers(-5, 3000),
    other=st.integers(-5, 3000),
)
def test_split_custom_limits(twins, name_lengths, seed, first, other):
    py, c = twins("dirents")
    same(py.split_entries, c.split_entries, sized_entries(name_lengths, seed), first, other)
    same(py.split_entries, c.split_entries, sized_entries(name_lengths, seed), first_limit=first)


@pytest.mark.parametrize("extra", [-2, 0, 1])
def test_split_at_the_first_limit(twins, extra):
    """Entries filling the first segment to 16,360 + extra bytes (24-byte fhs: 30 + n each)."""
    py, c = twins("dirents")
    sizes = [1000] * 16 + [360 + extra, 30]
    entries = sized_entries([size - 30 for size in sizes], 7)
    segments = same(py.split_entries, c.split_entries, entries)[2]
    if extra <= 0:
        assert [len(s) for s in segments] == [16360 + extra, 30]
    else:
        assert [len(s) for s in segments] == [16000, 361 + 30]


@pytest.mark.parametrize("extra", [-2, 0, 1])
def test_split_at_the_other_limit(twins, extra):
    """A full first segment, then entries filling the second to 262,144 + extra bytes."""
    py, c = twins("dirents")
    sizes = [16360] + [8192] * 31 + [8192 + extra, 30]
    entries = sized_entries([size - 30 for size in sizes], 8)
    segments = same(py.split_entries, c.split_entries, entries)[2]
    if extra <= 0:
        assert [len(s) for s in segments] == [16360, 262144 + extra, 30]
    else:
        assert [len(s) for s in segments] == [16360, 31 * 8192, 8193 + 30]


def test_split_edge_cases(twins):
    py, c = twins("dirents")
    assert same(py.split_entries, c.split_entries, [])[2] == [b""]
    huge = sized_entries([300000], 1)
    assert same(py.split_entries, c.split_entries, huge)[2] == [py.pack_entries(huge)]
    assert len(same(py.split_entries, c.split_entries, sized_entries([10] * 5, 2), 0, 0)[2]) == 5
    same(py.split_entries, c.split_entries, sized_entries([10] * 5, 2), 10**30, -(10**30))


@FAST
@given(entries=ENTRIES, cut=st.integers(0, 5000), junk=st.binary(max_size=12))
def test_unpack_truncated_and_garbage(twins, entries, cut, junk):
    py, c = twins("dirents")
    packed = py.pack_entries(entries)
    same(py.unpack_entries, c.unpack_entries, packed[: min(cut, len(packed))])
    same(py.unpack_entries, c.unpack_entries, packed + junk)
    same(py.unpack_entries, c.unpack_entries, junk)


def test_dirents_errors(twins):
    py, c = twins("dirents")
    raises_same(py.unpack_entries, c.unpack_entries, FormatError, b"\x01\x00")
    raises_same(py.unpack_entries, c.unpack_entries, FormatError, b"\x05\x00\x00\x00abc")
    raises_same(py.unpack_entries, c.unpack_entries, FormatError, b"\x01\x00\x00\x00a\x05\x00ab")
    for fn in ("pack_entries", "split_entries"):
        raises_same(getattr(py, fn), getattr(c, fn), EncodeError, [(b"n", b"x" * 65536)])
        raises_same(getattr(py, fn), getattr(c, fn), TypeError, [(b"n", 5)])
        raises_same(getattr(py, fn), getattr(c, fn), TypeError, [("name", b"fh")])
        raises_same(getattr(py, fn), getattr(c, fn), ValueError, [(b"n",)])
    assert same(py.pack_entries, c.pack_entries, [(b"n", b"x" * 65535)])[0] == "ok"


# --- envelope (§6) ---------------------------------------------------------------

LZ4_HEADER = bytes.fromhex("00000100" "04224d18405077")
SPECIAL_SIZES = [0, 1, 4, 100, 4096, LZ4_CHUNK - 1, LZ4_CHUNK, LZ4_CHUNK + 1, 2 * LZ4_CHUNK - 1, 2 * LZ4_CHUNK,
                 2 * LZ4_CHUNK + 1, 3 * LZ4_CHUNK + 1, 1 << 20]  # fmt: skip
BODIES = st.builds(
    pattern,
    st.one_of(st.sampled_from(SPECIAL_SIZES), st.integers(0, 1 << 20), st.integers(0, 3000)),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["text", "random", "mixed", "zeros"]),
)


@SLOW
@given(body=BODIES, kind=KINDS)
@example(body=pattern(LZ4_CHUNK, 1, "text"), kind="bytes")
@example(body=pattern(4 * LZ4_CHUNK, 2, "text"), kind="memoryview")
@example(body=pattern(LZ4_CHUNK, 3, "random"), kind="bytes")
def test_wrap_differential(twins, body, kind):
    py, c = twins("envelope")
    value = bytes_like(body, kind)
    payload = same(py.wrap, c.wrap, value)[2]
    raw = same(py.wrap, c.wrap, value, compress=False)[2]
    assert raw == bytes(4) + body
    assert payload[:4] in (bytes(4), LZ4_HEADER[:4]) and len(payload) <= len(raw)
    if payload[:4] == bytes(4):
        assert payload == raw
    else:
        assert payload[:11] == LZ4_HEADER and payload[-4:] == bytes(4)
    # cross round trips
    for unwrap in (py.unwrap, c.unwrap):
        assert unwrap(payload) == body and unwrap(bytes_like(raw, kind)) == body
    assert same(py.payload_mode, c.payload_mode, payload)[2] == payload[2]


@pytest.mark.parametrize("kind", ["text", "random", "mixed", "zeros"])
@pytest.mark.parametrize("size", SPECIAL_SIZES)
def test_wrap_sizes(twins, size, kind):
    """Every chunk boundary (262,144 * k +- 1) up to 1 MiB, for each kind of body."""
    py, c = twins("envelope")
    body = pattern(size, size, kind)
    payload = same(py.wrap, c.wrap, body)[2]
    assert c.unwrap(payload) == py.unwrap(payload) == body
    tail = size % LZ4_CHUNK
    if kind == "random" or (kind == "mixed" and size >= 4096):
        assert payload == bytes(4) + body  # incompressible: stored raw
    elif 0 < tail < 8 and size > LZ4_CHUNK:
        # a final block of a few bytes cannot shrink, so LZ4 stores it raw (bit 31): the rule keeps the blob raw
        assert payload == bytes(4) + body
    elif size >= 4096:
        assert payload[:11] == LZ4_HEADER


def test_frame_header_and_raw_fallbacks(impl):
    envelope = impl("envelope")
    compressible = pattern(10000, 5, "text")
    assert envelope.wrap(compressible)[:11] == LZ4_HEADER
    noise = os.urandom(4096)
    assert envelope.wrap(noise) == bytes(4) + noise
    assert envelope.wrap(b"") == bytes(4)  # the frame (15 bytes) is larger than the raw blob
    assert envelope.wrap(compressible, compress=False) == bytes(4) + compressible
    assert envelope.wrap(compressible, 0) == bytes(4) + compressible
    # a block LZ4 stores raw (bit 31) forces the whole blob raw: first block, or the final one
    first_raw = os.urandom(LZ4_CHUNK) + bytes(3 * LZ4_CHUNK)
    assert envelope.wrap(first_raw) == bytes(4) + first_raw
    last_raw = bytes(LZ4_CHUNK) + os.urandom(100000)
    assert envelope.wrap(last_raw) == bytes(4) + last_raw


def test_wrap_is_a_function_of_the_body(impl):
    """The same body gives the same bytes whatever the context's history or the thread."""
    envelope = impl("envelope")
    body = pattern(50000, 9, "text")
    first = envelope.wrap(body)
    for size in (1, 100, LZ4_CHUNK + 5, 1 << 20):
        envelope.wrap(pattern(size, size, "text"))
    assert envelope.wrap(body) == first
    results = []
    thread = threading.Thread(target=lambda: results.append(envelope.wrap(body)))
    thread.start()
    thread.join()
    assert results == [first]


@pytest.mark.c_extension
def test_threads_share_the_compiled_twin(twins):
    """Bodies of 64 KiB and more are (de)compressed with the GIL released."""
    py, c = twins("envelope")
    bodies = [pattern(70000 + 30000 * i, i, "text" if i % 3 else "mixed") for i in range(12)]
    expected = [py.wrap(body) for body in bodies]

    def job(i):
        payload = c.wrap(bodies[i])
        return payload, c.unwrap(payload)

    with ThreadPoolExecutor(4) as pool:
        for _ in range(2):
            for i, (payload, body) in enumerate(pool.map(job, range(len(bodies)))):
                assert payload == expected[i] and body == bodies[i]


@FAST
@given(body=st.builds(pattern, st.integers(1000, 20000), st.integers(0, 99), st.just("text")), cut=st.integers(0, 10**6))
def test_unwrap_truncated_or_padded(twins, body, cut):
    py, c = twins("envelope")
    payload = py.wrap(body)
    assert payload[:4] == LZ4_HEADER[:4]
    raises_same(py.unwrap, c.unwrap, FormatError, payload[: cut % len(payload)])
    raises_same(py.unwrap, c.unwrap, FormatError, payload + b"\x00")
    raises_same(py.unwrap, c.unwrap, FormatError, payload + bytes([cut % 256]) * (1 + cut % 7))


@FAST
@given(body=st.builds(pattern, st.integers(1000, 5000), st.integers(0, 99), st.just("text")), data=st.data())
def test_unwrap_corrupted(twins, body, data):
    py, c = twins("envelope")
    payload = bytearray(py.wrap(body))
    position = data.draw(st.integers(4, len(payload) - 1))
    payload[position] ^= data.draw(st.integers(1, 255))
    same(py.unwrap, c.unwrap, bytes(payload))


@FAST
@given(payload=st.binary(max_size=64), kind=KINDS)
@example(payload=b"", kind="bytes")
@example(payload=b"\x00\x00\x01\x00" + bytes.fromhex("04224d18405077"), kind="bytes")
@example(payload=b"\x00\x00\x01\x00" + bytes.fromhex("04224d18405077") + bytes(4), kind="bytes")
@example(payload=b"\x00\x00\x01\x00" + bytes.fromhex("502a4d18") + (3).to_bytes(4, "little") + b"abc", kind="bytes")
def test_unwrap_arbitrary(twins, payload, kind):
    py, c = twins("envelope")
    same(py.unwrap, c.unwrap, bytes_like(payload, kind))
    same(py.payload_mode, c.payload_mode, bytes_like(payload, kind))


def test_envelope_errors(twins):
    py, c = twins("envelope")
    for payload in (b"", b"\x00\x00", b"\x01\x00\x00\x00", b"\x00\x00\x02\x00", [0, 0]):
        for name in ("unwrap", "payload_mode"):
            raises_same(getattr(py, name), getattr(c, name), FormatError, payload)
    raises_same(py.unwrap, c.unwrap, TypeError, [0, 0, 0, 0, 1])
    for body in ("text", None, 5, [1, 2]):
        raises_same(py.wrap, c.wrap, TypeError, body)
    assert same(py.wrap, c.wrap, [104, 105], compress=False)[2] == b"\x00\x00\x00\x00hi"


# --- checksum ------------------------------------------------------------------------

XXH3_128_EMPTY = bytes.fromhex("99aa06d3014798d86001c324468d497f")


@FAST
@given(
    data=st.one_of(
        st.binary(max_size=500),
        st.builds(pattern, st.sampled_from([65535, 65536, 65537, 300000]), st.integers(0, 9), st.just("random")),
    ),
    kind=KINDS,
)
@example(data=b"", kind="bytes")
def test_checksum_differential(twins, data, kind):
    py, c = twins("checksum")
    digest = same(py.checksum, c.checksum, bytes_like(data, kind))[2]
    assert digest == xxhash.xxh3_128_digest(data) and len(digest) == 16


def test_checksum_vector(impl):
    checksum = impl("checksum").checksum
    assert checksum(b"") == XXH3_128_EMPTY
    assert checksum(bytearray(b"abc")) == checksum(memoryview(b"xabc")[1:]) == xxhash.xxh3_128_digest(b"abc")


def test_checksum_errors(twins):
    py, c = twins("checksum")
    for bad in ("text", None, [1, 2], memoryview(b"abcdef")[::2]):
        same(py.checksum, c.checksum, bad)


def test_unwrap_refuses_a_frame_larger_than_any_object(twins):
    """A small hostile blob whose LZ4 frame decompresses past MAX_BODY_BYTES: refused by both twins, same reason."""
    import lz4.frame

    from clfsload.clfs.constants import BODY_TOO_LARGE, MAX_BODY_BYTES

    py, c = twins("envelope")
    bomb = b"\x00\x00\x01\x00" + lz4.frame.compress(bytes(MAX_BODY_BYTES + 1), block_size=lz4.frame.BLOCKSIZE_MAX256KB)
    assert len(bomb) < MAX_BODY_BYTES // 200
    for twin in (py, c):
        with pytest.raises(FormatError) as caught:
            twin.unwrap(bomb)
        assert str(caught.value) == BODY_TOO_LARGE % MAX_BODY_BYTES
    exact = b"\x00\x00\x01\x00" + lz4.frame.compress(bytes(MAX_BODY_BYTES), block_size=lz4.frame.BLOCKSIZE_MAX256KB)
    assert py.unwrap(exact) == c.unwrap(exact) == bytes(MAX_BODY_BYTES)
