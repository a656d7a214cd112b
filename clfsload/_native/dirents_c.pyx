"""Directory entry packing, splitting and unpacking: the compiled twin of ``dirents_py`` (§8.2, §12).

Same names, arguments, results and exceptions as ``dirents_py``, whose
docstrings are the specification. Entries are packed into one growing C
buffer; a segment becomes a ``bytes`` object when it is closed.
"""

import struct

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.pyport cimport PY_SSIZE_T_MAX, PY_SSIZE_T_MIN
from libc.stdint cimport uint16_t, uint32_t
from libc.string cimport memmove

from ._buffer cimport Span, get_u16, get_u32, put_bytes, put_u16, put_u32, span_close, span_open

from ..clfs.constants import DIR_FIRST_SEGMENT_LIMIT, DIR_OTHER_SEGMENT_BYTES
from ..errors import EncodeError, FormatError

__all__ = ["pack_entries", "split_entries", "unpack_entries"]


cdef struct Writer:
    unsigned char* buf
    Py_ssize_t len
    Py_ssize_t cap


cdef int _reserve(Writer* w, Py_ssize_t extra) except -1:
    """Make room for ``extra`` more bytes (geometric growth)."""
    cdef Py_ssize_t need = w.len + extra
    cdef Py_ssize_t cap
    cdef void* buf
    if need <= w.cap:
        return 0
    cap = max(need, 2 * w.cap, 4096)
    buf = PyMem_Realloc(w.buf, <size_t>cap)
    if buf == NULL:
        raise MemoryError()
    w.buf = <unsigned char*>buf
    w.cap = cap
    return 0


cdef int _append_entry(Writer* w, object name, object fh) except -1:
    """Append ``u32 name length | name | u16 fh length | fh``, checking as the pure twin's ``_pack``."""
    cdef Span sname, sfh
    cdef unsigned char* p
    sname.has_view = False
    keep_fh = span_open(&sfh, fh, True)
    try:
        if sfh.len > 0xFFFF:
            raise EncodeError("filehandle of %d bytes is longer than a u16 length allows" % sfh.len)
        keep_name = span_open(&sname, name, True)
        if <size_t>sname.len > 0xFFFFFFFF:
            raise struct.error("'I' format requires 0 <= number <= 4294967295")
        _reserve(w, 6 + sname.len + sfh.len)
        p = w.buf + w.len
        p = put_u32(p, <uint32_t>sname.len)
        p = put_bytes(p, sname.ptr, sname.len)
        p = put_u16(p, <uint16_t>sfh.len)
        p = put_bytes(p, sfh.ptr, sfh.len)
        w.len = p - w.buf
    finally:
        span_close(&sname)
        span_close(&sfh)
    return 0


cdef Py_ssize_t _limit(object value) except? -1:
    """A segment limit as a C size; ints beyond its range saturate (comparisons stay the same)."""
    try:
        return value
    except OverflowError:
        return PY_SSIZE_T_MAX if value > 0 else PY_SSIZE_T_MIN


def pack_entries(entries):
    """Pack ``(name, fh)`` pairs back to back, with no count and no padding."""
    cdef Writer w = Writer(NULL, 0, 0)
    try:
        for name, fh in entries:
            _append_entry(&w, name, fh)
        return PyBytes_FromStringAndSize(<char*>w.buf, w.len)
    finally:
        PyMem_Free(w.buf)


def split_entries(entries, first_limit=DIR_FIRST_SEGMENT_LIMIT, other_limit=DIR_OTHER_SEGMENT_BYTES):
    """Pack ``entries`` into segments; return at least one (possibly empty) segment.

    An entry goes to a new segment (limit ``other_limit``) when the current
    one is non-empty and ``current + e > limit``.
    """
    cdef Py_ssize_t limit = _limit(first_limit)
    cdef Py_ssize_t other = _limit(other_limit)
    cdef Py_ssize_t start, entry
    cdef Writer w = Writer(NULL, 0, 0)
    cdef list segments = []
    try:
        for name, fh in entries:
            start = w.len  # the size of the current segment, which starts at w.buf
            _append_entry(&w, name, fh)
            entry = w.len - start
            if start > 0 and start + entry > limit:
                segments.append(PyBytes_FromStringAndSize(<char*>w.buf, start))
                memmove(w.buf, w.buf + start, entry)  # the new entry opens the next segment
                w.len = entry
                limit = other
        segments.append(PyBytes_FromStringAndSize(<char*>w.buf, w.len))
        return segments
    finally:
        PyMem_Free(w.buf)


def unpack_entries(data):
    """Parse packed entries back into ``(name, fh)`` pairs; FormatError names the offset of a truncated entry."""
    cdef Span span
    cdef Py_ssize_t pos = 0, end, fh_start
    cdef uint32_t nlen
    cdef uint16_t flen
    cdef const unsigned char* p
    cdef list out = []
    keep = span_open(&span, data, False)
    try:
        p = span.ptr
        end = span.len
        while pos < end:
            if end - pos < 4:
                raise FormatError("directory entry at offset %d: truncated name length" % pos)
            nlen = get_u32(p + pos)
            if end - pos - 4 < <Py_ssize_t>nlen + 2:
                raise FormatError(
                    "directory entry at offset %d: name of %d bytes overruns the entries" % (pos, nlen)
                )
            flen = get_u16(p + pos + 4 + nlen)
            fh_start = pos + 6 + nlen
            if end - fh_start < flen:
                raise FormatError(
                    "directory entry at offset %d: handle of %d bytes overruns the entries" % (pos, flen)
                )
            out.append(
                (
                    PyBytes_FromStringAndSize(<char*>p + pos + 4, nlen),
                    PyBytes_FromStringAndSize(<char*>p + fh_start, flen),
                )
            )
            pos = fh_start + flen
        return out
    finally:
        span_close(&span)
