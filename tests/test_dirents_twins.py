"""clfsload._native.dirents: its two twins against each other (Hypothesis), the
split of a listing into segments at its limits (§8.2, §12)."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clfsload.clfs.constants import DIR_FIRST_SEGMENT_LIMIT, DIR_OTHER_SEGMENT_BYTES
from clfsload.errors import EncodeError, FormatError

from _twins import FAST, IDS, KINDS, SLOW, bytes_like, raises_same, same, same_fresh


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
