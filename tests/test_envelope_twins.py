"""clfsload._native.envelope: its two twins against each other (Hypothesis), cross
round trips, the LZ4 framing rules and hostile payloads (§6)."""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from clfsload.clfs.constants import LZ4_CHUNK, RAW_ENVELOPE
from clfsload.errors import FormatError

from _twins import FAST, KINDS, SLOW, bytes_like, pattern, raises_same, same


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


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("kind", ["text", "random", "mixed", "zeros"])
@pytest.mark.parametrize("size", [0, 1, 100, LZ4_CHUNK - 1, LZ4_CHUNK + 1, 3 * LZ4_CHUNK + 1, 1 << 20])
def test_wrap_prefixed_is_wrap_and_keeps_a_raw_body_in_place(twins, size, kind, compress):
    """wrap_prefixed(RAW_ENVELOPE + body) is wrap(body), and the very object given when the body stays raw."""
    py, c = twins("envelope")
    body = pattern(size, size + 1, kind)
    framed = RAW_ENVELOPE + body
    expected = py.wrap(body, compress)
    for twin in (py, c):
        payload = twin.wrap_prefixed(framed, compress)
        assert payload == expected
        assert (payload is framed) == (expected[:4] == bytes(4))  # raw: no copy made


def test_wrap_prefixed_refuses_a_body_without_the_raw_header(twins):
    py, c = twins("envelope")
    for framed in (b"", b"\0\0\0", b"\0\0\1\0body", b"\1\0\0\0body"):
        raises_same(py.wrap_prefixed, c.wrap_prefixed, ValueError, framed)
    raises_same(py.wrap_prefixed, c.wrap_prefixed, TypeError, "text")


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
