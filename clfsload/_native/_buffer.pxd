# cython: language_level=3
"""Shared inline helpers of the compiled twins: read spans and little-endian writers.

A :c:type:`Span` reads the bytes of an argument the way the pure twins'
``bytes(x)`` would, without copying when it can; the ``put_*`` writers fill
preallocated output buffers (CLFS integers are little-endian, spec §0).
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_CheckBuffer, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset


cdef struct Span:
    const unsigned char* ptr
    Py_ssize_t len
    bint has_view
    Py_buffer view


cdef inline object span_open(Span* span, object obj, bint sized):
    """Point ``span`` at the bytes ``bytes(obj)`` would hold; return the object that owns them.

    Exact ``bytes`` are read in place and other C-contiguous buffers through
    the buffer protocol (release with :func:`span_close`). Anything else goes
    through ``bytes(obj)``, preceded by ``len(obj)`` when ``sized``, as the
    pure twins' ``len(x)``-then-``bytes(x)`` helpers do, so the same inputs
    are accepted and the same exceptions raised. The caller keeps the
    returned object alive while it reads the span.
    """
    span.has_view = False
    if PyBytes_CheckExact(obj):
        span.ptr = <const unsigned char*>PyBytes_AS_STRING(obj)
        span.len = PyBytes_GET_SIZE(obj)
        return obj
    if PyObject_CheckBuffer(obj):
        try:
            PyObject_GetBuffer(obj, &span.view, PyBUF_SIMPLE)
        except BufferError:
            pass  # not C-contiguous: bytes() below copies it in C order
        else:
            span.has_view = True
            span.ptr = <const unsigned char*>span.view.buf
            span.len = span.view.len
            return obj
    elif sized:
        len(obj)
    obj = bytes(obj)
    span.ptr = <const unsigned char*>PyBytes_AS_STRING(obj)
    span.len = PyBytes_GET_SIZE(obj)
    return obj


cdef inline object span_open_buffer(Span* span, object obj):
    """Like :func:`span_open` but only for bytes-like objects (TypeError/BufferError otherwise)."""
    span.has_view = False
    if PyBytes_CheckExact(obj):
        span.ptr = <const unsigned char*>PyBytes_AS_STRING(obj)
        span.len = PyBytes_GET_SIZE(obj)
        return obj
    PyObject_GetBuffer(obj, &span.view, PyBUF_SIMPLE)
    span.has_view = True
    span.ptr = <const unsigned char*>span.view.buf
    span.len = span.view.len
    return obj


cdef inline void span_close(Span* span) noexcept:
    """Release the buffer view of ``span``, if it holds one; safe to call twice."""
    if span.has_view:
        span.has_view = False
        PyBuffer_Release(&span.view)


cdef inline unsigned char* put_u8(unsigned char* p, uint8_t v) noexcept nogil:
    p[0] = v
    return p + 1


cdef inline unsigned char* put_u16(unsigned char* p, uint16_t v) noexcept nogil:
    p[0] = <uint8_t>v
    p[1] = <uint8_t>(v >> 8)
    return p + 2


cdef inline unsigned char* put_u32(unsigned char* p, uint32_t v) noexcept nogil:
    # byte stores; compilers merge them into one little-endian store
    p[0] = <uint8_t>v
    p[1] = <uint8_t>(v >> 8)
    p[2] = <uint8_t>(v >> 16)
    p[3] = <uint8_t>(v >> 24)
    return p + 4


cdef inline unsigned char* put_u64(unsigned char* p, uint64_t v) noexcept nogil:
    put_u32(p, <uint32_t>v)
    put_u32(p + 4, <uint32_t>(v >> 32))
    return p + 8


cdef inline unsigned char* put_bytes(unsigned char* p, const void* src, size_t n) noexcept nogil:
    if n:
        memcpy(p, src, n)
    return p + n


cdef inline unsigned char* put_zeros(unsigned char* p, size_t n) noexcept nogil:
    if n:
        memset(p, 0, n)
    return p + n


cdef inline uint32_t get_u32(const unsigned char* p) noexcept nogil:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint16_t get_u16(const unsigned char* p) noexcept nogil:
    return <uint16_t>(p[0] | (<uint16_t>p[1] << 8))
