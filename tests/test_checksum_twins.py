"""clfsload._native.checksum: its two twins against each other and XXH3-128."""


import xxhash
from hypothesis import example, given
from hypothesis import strategies as st

from _twins import FAST, KINDS, bytes_like, pattern, same


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
