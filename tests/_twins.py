"""Shared helpers of the twin tests (tests/test_*_twins.py, test_native_selector.py).

Differential checks (:func:`same`: the compiled twin's outcome equals the pure
one's, exception class and, for clfsload's own errors, message included),
reproducible bodies, Hypothesis strategies and the §18 example values.
"""

import random

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from clfsload.clfs.constants import (
    BUCKET_ID,
    INPROGRESS_ID,
    LZ4_CHUNK,
    NULL_FH,
    NULL_ID,
    ORPHAN_PARENT_ID,
    ROOT_ID,
    Btype,
)
from clfsload.clfs.vattr import VAttr
from clfsload.errors import ClfsLoadError

from _spec_vectors import DOCS_FH, HELLO_FH


TOPICS = ("blobfile", "checksum", "dirents", "envelope", "hashing", "records", "sourceio")

# Hypothesis: enough examples for the edge cases, the whole module well under a minute.
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])




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
