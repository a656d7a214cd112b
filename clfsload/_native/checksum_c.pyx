"""XXH3-128 checksums of object payloads: the compiled twin of ``checksum_py``.

Links the system libxxhash; the digest is the canonical (big-endian) 16-byte
form, identical to ``xxhash.xxh3_128_digest``.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_Check

from ._buffer cimport Span, span_close, span_open_buffer
from ._xxhash cimport XXH3_128bits, XXH128_canonical_t, XXH128_canonicalFromHash, XXH128_hash_t

__all__ = ["checksum"]

cdef enum:
    NOGIL_MIN = 65536  # hash larger inputs with the GIL released
    DIGEST_LEN = 16


def checksum(data):
    """Return the 16-byte XXH3-128 digest (seed 0) of ``data``."""
    cdef Span span
    cdef XXH128_hash_t h
    cdef bytes out
    if PyUnicode_Check(data):  # the message python-xxhash gives
        raise TypeError("Strings must be encoded before hashing")
    keep = span_open_buffer(&span, data)
    try:
        if span.len >= NOGIL_MIN:
            with nogil:
                h = XXH3_128bits(span.ptr, <size_t>span.len)
        else:
            h = XXH3_128bits(span.ptr, <size_t>span.len)
    finally:
        span_close(&span)
    out = PyBytes_FromStringAndSize(NULL, DIGEST_LEN)
    XXH128_canonicalFromHash(<XXH128_canonical_t*>PyBytes_AS_STRING(out), h)
    return out
