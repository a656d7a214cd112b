"""The blob envelope and its LZ4 framing: the pure-Python twin (spec §6).

A payload is ``u16 encryption (0) | u16 compression (0 raw, 1 LZ4)`` and the
object body, raw or as one LZ4 frame. The frame uses 256 KiB linked blocks,
no checksums and no content size, so its header is always
``04 22 4D 18 40 50 77``. The body is kept raw when the frame would be larger
than the raw body, or when LZ4 stored any block uncompressed (bit 31 of the
block size word), which the consumer cannot read.
"""

import struct
import threading

import lz4.frame

from ..clfs.constants import (
    COMPRESSION_DISABLED,
    COMPRESSION_LZ4,
    ENCRYPTION_DISABLED,
    BODY_TOO_LARGE,
    ENVELOPE_LEN,
    LZ4_CHUNK,
    MAX_BODY_BYTES,
)
from ..errors import FormatError

__all__ = ["wrap", "wrap_prefixed", "unwrap", "payload_mode"]

_RAW_HEADER = struct.pack("<HH", ENCRYPTION_DISABLED, COMPRESSION_DISABLED)
_LZ4_HEADER = struct.pack("<HH", ENCRYPTION_DISABLED, COMPRESSION_LZ4)
_UNCOMPRESSED_BIT = 0x80000000

# One compression context per thread: its work buffers are reused, and LZ4F
# allows a new frame once the previous one was ended. LZ4 compresses the
# first frame of a new context (empty hash table, stream offset 0) a little
# differently from every later frame, and it silently empties the table again
# once the stream offset passes 1 GiB (each frame adds its length + 64 KiB).
# So that the bytes depend on the body alone, whatever the thread's history,
# a context is warmed with one tiny frame when created and retired after
# _CONTEXT_BUDGET bytes of offset. envelope_c follows the same rule.
_local = threading.local()
_CONTEXT_BUDGET = 1 << 29
_CONTEXT_GAP = 65536
_FRAME = dict(
    block_size=lz4.frame.BLOCKSIZE_MAX256KB,
    block_linked=True,
    content_checksum=False,
    block_checksum=False,
    auto_flush=False,
    source_size=0,
    compression_level=0,
)


def _context(inlen: int):
    """This thread's compression context, charged for a body of ``inlen`` bytes."""
    ctx = getattr(_local, "ctx", None)
    charge = inlen + _CONTEXT_GAP
    if ctx is None or _local.budget < charge:
        ctx = lz4.frame.create_compression_context()
        lz4.frame.compress_begin(ctx, **_FRAME)
        lz4.frame.compress_chunk(ctx, b"warm-up!")
        lz4.frame.compress_flush(ctx, end_frame=True)
        _local.ctx = ctx
        _local.budget = _CONTEXT_BUDGET
    _local.budget -= charge
    return ctx


def _raw_block(output: bytes) -> bool:
    """True if ``output`` starts with a block size word that marks a stored block."""
    return len(output) >= 4 and (int.from_bytes(output[:4], "little") & _UNCOMPRESSED_BIT) != 0


def _compress(body: bytes):
    """The LZ4 frame of ``body`` per §6.2, or None when the body must stay raw."""
    inlen = len(body)
    limit = inlen + ENVELOPE_LEN
    ctx = _context(inlen)
    parts = [lz4.frame.compress_begin(ctx, **_FRAME)]
    total = ENVELOPE_LEN + len(parts[0])
    view = memoryview(body)
    try:
        for start in range(0, inlen, LZ4_CHUNK):
            out = lz4.frame.compress_chunk(ctx, view[start : start + LZ4_CHUNK])
            if not out:
                continue
            total += len(out)
            # With auto-flush off a full chunk yields exactly one block.
            if total >= limit or _raw_block(out):
                return None
            parts.append(out)
    finally:
        # Always end the frame so the context can start the next one.
        end = lz4.frame.compress_flush(ctx, end_frame=True)
    if _raw_block(end):
        return None
    total += len(end)
    if total > limit:
        return None
    parts.append(end)
    return b"".join(parts)


def wrap(body: bytes, compress: bool = True) -> bytes:
    """Return the blob payload for an object ``body``.

    With ``compress`` the body is LZ4-framed unless a fallback rule of §6.2
    keeps it raw; without it the body is always stored raw.
    """
    if compress:
        frame = _compress(body)
        if frame is not None:
            return _LZ4_HEADER + frame
    return _RAW_HEADER + bytes(body)


def wrap_prefixed(framed: bytes, compress: bool = True) -> bytes:
    """:func:`wrap` of the body in ``framed`` = RAW_ENVELOPE + body; ``framed`` itself when the body stays raw.

    An encoder that puts RAW_ENVELOPE (:mod:`clfsload.clfs.constants`) before a large body (a file segment) so
    spares the copy :func:`wrap` makes of a body it keeps raw. ValueError if
    ``framed`` does not start with RAW_ENVELOPE.
    """
    view = memoryview(framed)
    if bytes(view[:ENVELOPE_LEN]) != _RAW_HEADER:
        raise ValueError("wrap_prefixed: the body must follow the raw envelope header")
    payload = wrap(view[ENVELOPE_LEN:], compress)
    return framed if payload[:ENVELOPE_LEN] == _RAW_HEADER else payload


def payload_mode(payload: bytes) -> int:
    """The compression mode of a payload (0 raw, 1 LZ4), after checking its header."""
    if len(payload) < ENVELOPE_LEN:
        raise FormatError("payload of %d bytes is shorter than the 4-byte envelope" % len(payload))
    encryption, compression = struct.unpack_from("<HH", payload, 0)
    if encryption != ENCRYPTION_DISABLED:
        raise FormatError("envelope at offset 0: encryption mode %d is not supported" % encryption)
    if compression not in (COMPRESSION_DISABLED, COMPRESSION_LZ4):
        raise FormatError("envelope at offset 2: unknown compression mode %d" % compression)
    return compression


def unwrap(payload: bytes) -> bytes:
    """Return the object body of a blob payload, decompressing an LZ4 frame."""
    mode = payload_mode(payload)
    rest = memoryview(payload)[ENVELOPE_LEN:]
    if mode == COMPRESSION_DISABLED:
        return bytes(rest)
    try:  # bounded first: never more than MAX_BODY_BYTES + 1 out of a hostile frame
        if len(lz4.frame.LZ4FrameDecompressor().decompress(rest, max_length=MAX_BODY_BYTES + 1)) > MAX_BODY_BYTES:
            raise FormatError(BODY_TOO_LARGE % MAX_BODY_BYTES)
    except RuntimeError:
        pass  # a corrupt frame: the full decode below names it as before
    try:
        body, consumed = lz4.frame.decompress(rest, return_bytes_read=True)
    except RuntimeError as exc:
        raise FormatError("envelope at offset 4: corrupt or truncated LZ4 frame (%s)" % exc) from None
    if consumed != len(rest):
        raise FormatError(
            "envelope at offset %d: %d bytes follow the LZ4 frame" % (ENVELOPE_LEN + consumed, len(rest) - consumed)
        )
    return body
