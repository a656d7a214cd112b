"""The blob envelope and its LZ4 framing: the compiled twin of ``envelope_py`` (spec §6).

Same names, arguments, results and exceptions as ``envelope_py``, whose
docstrings are the specification. Links the system liblz4 (the LZ4F frame
API). The frame is written straight into the result after the 4-byte
envelope header; inputs of 64 KiB or more are (de)compressed with the GIL
released.

Compression contexts come from a small free list, guarded by the GIL and
owned by one caller at a time. They follow the pure twin's rule (see
envelope_py): a context is warmed with one tiny frame when created and
retired before LZ4's stream offset could reach 1 GiB, so no frame is ever
compressed from a fresh (or silently cleared) hash table and the output
depends on the body alone. A frame is finished with ``LZ4F_flush`` plus the
4-byte end mark, the bytes ``LZ4F_compressEnd`` writes for this frame type;
liblz4 1.9.4's compressEnd would also drop the context's 384 KiB buffer,
costing a calloc per object.
"""

from cpython.buffer cimport PyObject_CheckBuffer
from cpython.bytes cimport PyBytes_CheckExact
from cpython.object cimport PyObject
from cpython.ref cimport Py_XDECREF
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from ._buffer cimport Span, get_u16, get_u32, put_u16, put_u32, span_close, span_open, span_open_buffer
from ._lz4 cimport (
    LZ4F_blockLinked,
    LZ4F_compressBegin,
    LZ4F_compressFrameBound,
    LZ4F_compressOptions_t,
    LZ4F_compressUpdate,
    LZ4F_createCompressionContext,
    LZ4F_createDecompressionContext,
    LZ4F_cctx,
    LZ4F_dctx,
    LZ4F_decompress,
    LZ4F_decompressOptions_t,
    LZ4F_flush,
    LZ4F_frameInfo_t,
    LZ4F_freeCompressionContext,
    LZ4F_freeDecompressionContext,
    LZ4F_getErrorName,
    LZ4F_getFrameInfo,
    LZ4F_isError,
    LZ4F_max256KB,
    LZ4F_noBlockChecksum,
    LZ4F_noContentChecksum,
    LZ4F_preferences_t,
    LZ4F_resetDecompressionContext,
    LZ4F_VERSION,
)

from ..clfs.constants import (
    BODY_TOO_LARGE,
    COMPRESSION_DISABLED,
    COMPRESSION_LZ4,
    ENCRYPTION_DISABLED,
    ENVELOPE_LEN,
    LZ4_CHUNK,
    MAX_BODY_BYTES,
)
from ..errors import FormatError

__all__ = ["wrap", "wrap_prefixed", "unwrap", "payload_mode"]


cdef extern from "Python.h":
    # raw-pointer forms, so that a result can be resized in place
    PyObject* _bytes_new "PyBytes_FromStringAndSize"(const char* v, Py_ssize_t size) except NULL
    char* _bytes_data "PyBytes_AS_STRING"(PyObject* o) noexcept nogil
    int _PyBytes_Resize(PyObject** pv, Py_ssize_t newsize) except -1


cdef enum:
    NOGIL_MIN = 65536  # (de)compress larger bodies with the GIL released
    POOL_MAX = 16  # idle contexts kept per kind
    CONTEXT_GAP = 65536  # LZ4 advances a context's stream offset by this per frame

cdef Py_ssize_t _ENVELOPE_LEN = ENVELOPE_LEN  # 4
cdef size_t _CHUNK = LZ4_CHUNK  # 262144: one 256 KiB block per update
cdef long long _CONTEXT_BUDGET = 1 << 29  # retire a context after ~512 MiB of stream offset
cdef int _RAW_MODE = COMPRESSION_DISABLED
cdef int _LZ4_MODE = COMPRESSION_LZ4
cdef int _NO_ENCRYPTION = ENCRYPTION_DISABLED

# §6.2: 256 KiB linked blocks, no checksums, no content size, level 0,
# auto-flush off; the frame header is always 04 22 4D 18 40 50 77.
cdef LZ4F_preferences_t _PREFS
memset(&_PREFS, 0, sizeof(_PREFS))
_PREFS.frameInfo.blockSizeID = LZ4F_max256KB
_PREFS.frameInfo.blockMode = LZ4F_blockLinked
_PREFS.frameInfo.contentChecksumFlag = LZ4F_noContentChecksum
_PREFS.frameInfo.blockChecksumFlag = LZ4F_noBlockChecksum
_PREFS.frameInfo.contentSize = 0
_PREFS.compressionLevel = 0
_PREFS.autoFlush = 0

cdef LZ4F_compressOptions_t _COPTS  # stableSrc = 0, as python-lz4 passes
memset(&_COPTS, 0, sizeof(_COPTS))
cdef LZ4F_decompressOptions_t _DOPTS  # stableDst = 0: the output may move when it grows
memset(&_DOPTS, 0, sizeof(_DOPTS))


# --- context free lists (touched only with the GIL held) ---------------------


cdef struct Compressor:
    LZ4F_cctx* cctx
    long long budget  # stream offset left before retirement

cdef Compressor* _cpool[POOL_MAX]
cdef int _cpool_len = 0
cdef LZ4F_dctx* _dpool[POOL_MAX]
cdef int _dpool_len = 0


cdef inline bint _stored_block(const unsigned char* out, size_t n) noexcept nogil:
    """True if ``out`` starts with a block size word whose bit 31 marks a raw block."""
    return n >= 4 and (get_u32(out) >> 31) != 0


cdef void _free_compressor(Compressor* c) noexcept:
    LZ4F_freeCompressionContext(c.cctx)
    free(c)


cdef int _lz4_error(const char* what, size_t code) except -1:
    raise RuntimeError("%s failed with code: %s" % (what.decode(), LZ4F_getErrorName(code).decode()))


cdef Compressor* _new_compressor() except NULL:
    """A context that has already compressed one frame (see the module docstring)."""
    cdef unsigned char scratch[64]
    cdef size_t n, pos
    cdef Compressor* c = <Compressor*>malloc(sizeof(Compressor))
    if c == NULL:
        raise MemoryError()
    n = LZ4F_createCompressionContext(&c.cctx, LZ4F_VERSION)
    if LZ4F_isError(n):
        free(c)
        _lz4_error(b"LZ4F_createCompressionContext", n)
    c.budget = _CONTEXT_BUDGET
    n = LZ4F_compressBegin(c.cctx, scratch, sizeof(scratch), &_PREFS)
    if not LZ4F_isError(n):
        pos = n
        n = LZ4F_compressUpdate(c.cctx, scratch + pos, sizeof(scratch) - pos, <const char*>b"warm-up!", 8, &_COPTS)
        if not LZ4F_isError(n):
            pos += n
            n = LZ4F_flush(c.cctx, scratch + pos, sizeof(scratch) - pos, &_COPTS)
    if LZ4F_isError(n):
        _free_compressor(c)
        _lz4_error(b"LZ4F warm-up", n)
    return c


cdef Compressor* _acquire_compressor(size_t inlen) except NULL:
    global _cpool_len
    cdef Compressor* c = NULL
    cdef long long charge = <long long>inlen + CONTEXT_GAP
    while _cpool_len > 0:
        _cpool_len -= 1
        c = _cpool[_cpool_len]
        if c.budget >= charge:
            break
        _free_compressor(c)  # retired
        c = NULL
    if c == NULL:
        c = _new_compressor()
    c.budget -= charge
    return c


cdef void _release_compressor(Compressor* c) noexcept:
    global _cpool_len
    if _cpool_len < POOL_MAX:
        _cpool[_cpool_len] = c
        _cpool_len += 1
    else:
        _free_compressor(c)


cdef LZ4F_dctx* _acquire_decompressor() except NULL:
    global _dpool_len
    cdef LZ4F_dctx* d
    cdef size_t n
    if _dpool_len > 0:
        _dpool_len -= 1
        d = _dpool[_dpool_len]
        LZ4F_resetDecompressionContext(d)  # it may have stopped mid-frame
        return d
    n = LZ4F_createDecompressionContext(&d, LZ4F_VERSION)
    if LZ4F_isError(n):
        _lz4_error(b"LZ4F_createDecompressionContext", n)
    return d


cdef void _release_decompressor(LZ4F_dctx* d) noexcept:
    global _dpool_len
    if _dpool_len < POOL_MAX:
        _dpool[_dpool_len] = d
        _dpool_len += 1
    else:
        LZ4F_freeDecompressionContext(d)


# --- compression (§6.2) --------------------------------------------------------


cdef Py_ssize_t _frame(
    LZ4F_cctx* cctx, const unsigned char* src, size_t inlen, unsigned char* dst, size_t cap, size_t* error
) noexcept nogil:
    """Write the LZ4 frame of ``src`` to ``dst`` (``cap`` >= LZ4F_compressFrameBound).

    Returns the frame length, 0 when a §6.2 rule keeps the body raw, or -1
    with the LZ4F code in ``error``.
    """
    cdef size_t limit = inlen + <size_t>_ENVELOPE_LEN  # the size of the raw blob
    cdef size_t total, pos, start = 0, chunk, n
    n = LZ4F_compressBegin(cctx, dst, cap, &_PREFS)
    if LZ4F_isError(n):
        error[0] = n
        return -1
    pos = n
    total = <size_t>_ENVELOPE_LEN + n
    while start < inlen:
        chunk = inlen - start if inlen - start < _CHUNK else _CHUNK
        n = LZ4F_compressUpdate(cctx, dst + pos, cap - pos, src + start, chunk, &_COPTS)
        if LZ4F_isError(n):
            error[0] = n
            return -1
        start += chunk
        if n == 0:
            continue  # a final partial chunk stays buffered until the flush
        total += n
        # with auto-flush off a full chunk yields exactly one block
        if total >= limit or _stored_block(dst + pos, n):
            return 0
        pos += n
    n = LZ4F_flush(cctx, dst + pos, cap - pos, &_COPTS)
    if LZ4F_isError(n):
        error[0] = n
        return -1
    if _stored_block(dst + pos, n):
        return 0
    total += n + 4
    if total > limit:  # strictly greater: an equal size stays compressed
        return 0
    pos += n
    put_u32(dst + pos, 0)  # end mark (no content checksum)
    return <Py_ssize_t>(pos + 4)


cdef inline void _put_envelope(unsigned char* p, int mode) noexcept nogil:
    put_u16(p, <unsigned short>_NO_ENCRYPTION)
    put_u16(p + 2, <unsigned short>mode)


def wrap(body, compress=True):
    """Return the blob payload for an object ``body``: LZ4-framed unless a §6.2 rule keeps it raw."""
    cdef Span span
    cdef PyObject* out = NULL
    cdef Compressor* c
    cdef Py_ssize_t n
    cdef size_t cap, error = 0
    cdef unsigned char* dst
    cdef bint use_lz4 = bool(compress)
    if use_lz4:
        keep = span_open_buffer(&span, body)
    else:
        keep = span_open(&span, body, False)
    try:
        n = 0
        if use_lz4:
            cap = LZ4F_compressFrameBound(<size_t>span.len, &_PREFS)  # >= len + 27
            out = _bytes_new(NULL, _ENVELOPE_LEN + <Py_ssize_t>cap)
            dst = <unsigned char*>_bytes_data(out)
            c = _acquire_compressor(<size_t>span.len)
            if span.len >= NOGIL_MIN:
                with nogil:
                    n = _frame(c.cctx, span.ptr, <size_t>span.len, dst + _ENVELOPE_LEN, cap, &error)
            else:
                n = _frame(c.cctx, span.ptr, <size_t>span.len, dst + _ENVELOPE_LEN, cap, &error)
            if n >= 0:
                _release_compressor(c)
            else:
                _free_compressor(c)
                _lz4_error(b"LZ4F compression", error)
        else:
            out = _bytes_new(NULL, _ENVELOPE_LEN + span.len)
            dst = <unsigned char*>_bytes_data(out)
        if n > 0:
            _put_envelope(dst, _LZ4_MODE)
            n += _ENVELOPE_LEN
        else:
            _put_envelope(dst, _RAW_MODE)
            memcpy(dst + _ENVELOPE_LEN, span.ptr, span.len)
            n = _ENVELOPE_LEN + span.len
        _PyBytes_Resize(&out, n)
        return <object>out
    finally:
        Py_XDECREF(out)
        span_close(&span)


def wrap_prefixed(framed, compress=True):
    """:func:`wrap` of the body in ``framed`` = RAW_ENVELOPE + body; ``framed`` itself when the body stays raw."""
    cdef Span span
    cdef PyObject* out = NULL
    cdef Compressor* c
    cdef Py_ssize_t n = 0
    cdef size_t cap, error = 0
    cdef unsigned char* dst
    keep = span_open_buffer(&span, framed)
    try:
        if span.len < _ENVELOPE_LEN or get_u16(span.ptr) != _NO_ENCRYPTION or get_u16(span.ptr + 2) != _RAW_MODE:
            raise ValueError("wrap_prefixed: the body must follow the raw envelope header")
        if not compress:
            return framed
        cap = LZ4F_compressFrameBound(<size_t>(span.len - _ENVELOPE_LEN), &_PREFS)
        out = _bytes_new(NULL, _ENVELOPE_LEN + <Py_ssize_t>cap)
        dst = <unsigned char*>_bytes_data(out)
        c = _acquire_compressor(<size_t>(span.len - _ENVELOPE_LEN))
        if span.len - _ENVELOPE_LEN >= NOGIL_MIN:
            with nogil:
                n = _frame(c.cctx, span.ptr + _ENVELOPE_LEN, <size_t>(span.len - _ENVELOPE_LEN),
                           dst + _ENVELOPE_LEN, cap, &error)
        else:
            n = _frame(c.cctx, span.ptr + _ENVELOPE_LEN, <size_t>(span.len - _ENVELOPE_LEN),
                       dst + _ENVELOPE_LEN, cap, &error)
        if n >= 0:
            _release_compressor(c)
        else:
            _free_compressor(c)
            _lz4_error(b"LZ4F compression", error)
        if n == 0:  # kept raw: the framed input is the payload
            return framed
        _put_envelope(dst, _LZ4_MODE)
        _PyBytes_Resize(&out, n + _ENVELOPE_LEN)
        return <object>out
    finally:
        Py_XDECREF(out)
        span_close(&span)


# --- decoding (§6.3) -----------------------------------------------------------


cdef int _mode(const unsigned char* p, Py_ssize_t n) except -1:
    """The compression mode of an envelope, after checking it."""
    cdef int encryption, compression
    if n < _ENVELOPE_LEN:
        raise FormatError("payload of %d bytes is shorter than the 4-byte envelope" % n)
    encryption = get_u16(p)
    compression = get_u16(p + 2)
    if encryption != _NO_ENCRYPTION:
        raise FormatError("envelope at offset 0: encryption mode %d is not supported" % encryption)
    if compression != _RAW_MODE and compression != _LZ4_MODE:
        raise FormatError("envelope at offset 2: unknown compression mode %d" % compression)
    return <int>compression


cdef object _open_payload(Span* span, object payload):
    """As the pure twin: ``len(payload)`` is checked before the buffer is needed."""
    if not PyBytes_CheckExact(payload) and not PyObject_CheckBuffer(payload):
        if len(payload) < _ENVELOPE_LEN:
            raise FormatError("payload of %d bytes is shorter than the 4-byte envelope" % len(payload))
    return span_open_buffer(span, payload)


def payload_mode(payload):
    """The compression mode of a payload (0 raw, 1 LZ4), after checking its header."""
    cdef Span span
    keep = _open_payload(&span, payload)
    try:
        return _mode(span.ptr, span.len)
    finally:
        span_close(&span)


cdef int _corrupt(str detail) except -1:
    raise FormatError("envelope at offset 4: corrupt or truncated LZ4 frame (%s)" % detail)


cdef object _decompress(const unsigned char* src, size_t size):
    """The body in the LZ4 frame ``src``, which must end exactly at ``size``.

    Follows python-lz4's ``decompress``: read the frame header, then call
    LZ4F_decompress until the frame ends, the input ends, or the output
    buffer is full (then grow it).
    """
    cdef LZ4F_dctx* d = _acquire_decompressor()
    cdef LZ4F_frameInfo_t info
    cdef PyObject* out = NULL
    cdef size_t read = size, cursor, written = 0, cap, grow, dst_size, src_size, r = 0
    cdef bint nogil_ok = size >= NOGIL_MIN
    try:
        r = LZ4F_getFrameInfo(d, &info, src, &read)
        if LZ4F_isError(r):
            _corrupt("LZ4F_getFrameInfo failed with code: %s" % LZ4F_getErrorName(r).decode())
        cursor = read
        # no content size in our frames: guess, and grow as needed
        cap = 4 * (size - cursor) + 64
        if 0 < info.contentSize < 256 * cap:  # LZ4 expands at most ~255x
            cap = <size_t>info.contentSize
        if cap > <size_t>MAX_BODY_BYTES + 1:
            cap = <size_t>MAX_BODY_BYTES + 1
        out = _bytes_new(NULL, <Py_ssize_t>cap)
        while True:
            dst_size = cap - written
            src_size = size - cursor
            if nogil_ok:
                with nogil:
                    r = LZ4F_decompress(
                        d, _bytes_data(out) + written, &dst_size, src + cursor, &src_size, &_DOPTS
                    )
            else:
                r = LZ4F_decompress(d, _bytes_data(out) + written, &dst_size, src + cursor, &src_size, &_DOPTS)
            if LZ4F_isError(r):
                _corrupt("LZ4F_decompress failed with code: %s" % LZ4F_getErrorName(r).decode())
            written += dst_size
            cursor += src_size
            if written > <size_t>MAX_BODY_BYTES:  # a hostile frame: stop before allocating more
                raise FormatError(BODY_TOO_LARGE % MAX_BODY_BYTES)
            if r == 0 or cursor == size:
                break  # end of the frame, or of the input
            if written == cap:
                grow = 3 * r if 3 * r > cap else cap
                cap += grow
                if cap > <size_t>MAX_BODY_BYTES + 1:
                    cap = <size_t>MAX_BODY_BYTES + 1
                _PyBytes_Resize(&out, <Py_ssize_t>cap)
        if r > 0:
            _corrupt("Frame incomplete. LZ4F_decompress returned: %d" % r)
        if cursor != size:
            raise FormatError(
                "envelope at offset %d: %d bytes follow the LZ4 frame" % (_ENVELOPE_LEN + cursor, size - cursor)
            )
        _PyBytes_Resize(&out, <Py_ssize_t>written)
        return <object>out
    finally:
        Py_XDECREF(out)
        _release_decompressor(d)


def unwrap(payload):
    """Return the object body of a blob payload, decompressing an LZ4 frame."""
    cdef Span span
    cdef int mode
    keep = _open_payload(&span, payload)
    try:
        mode = _mode(span.ptr, span.len)
        if mode == _RAW_MODE:
            return (<const char*>span.ptr)[_ENVELOPE_LEN : span.len]
        return _decompress(span.ptr + _ENVELOPE_LEN, <size_t>(span.len - _ENVELOPE_LEN))
    finally:
        span_close(&span)
