"""Handle and object-body encoders: the compiled twin of ``records_py`` (spec §7-§9).

Same names, arguments, results and exceptions as ``records_py``, whose
docstrings are the specification. Every encoder first validates and measures
its inputs (in the pure twin's order, so the same error comes first), then
allocates the result once and fills it in a single pass.
"""

import struct
from operator import index as _index

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_Check
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free

from ._buffer cimport (
    Span,
    put_bytes,
    put_u8,
    put_u16,
    put_u32,
    put_u64,
    put_zeros,
    span_close,
    span_open,
    span_open_buffer,
)

from ..clfs.constants import (
    BMAP_TREE_COUNT,
    DIR_OTHER_SEGMENT_BYTES,
    DIRECT_BLOCKS,
    FIRST_SEGMENT_BYTES,
    HANDLE_MAGIC,
    OTHER_SEGMENT_BYTES,
    VATTR_RECORD_LEN,
    Obtype,
)
from ..errors import EncodeError

__all__ = [
    "encode_handle",
    "encode_data",
    "encode_dirents",
    "encode_vattr",
    "encode_bmap",
    "encode_indir",
    "encode_back",
    "encode_databack",
    "encode_extattrs",
    "encode_name",
    "encode_file_inode",
    "encode_dir_inode",
    "encode_file_segment",
    "encode_file_segment_parts",
    "encode_dir_segment",
    "encode_indirect_block",
]

# Format constants, read once from clfs.constants (the single source).
cdef uint32_t _MAGIC = HANDLE_MAGIC
cdef uint32_t _RECORD_LEN = VATTR_RECORD_LEN  # 104
cdef uint32_t _FIRST_SEGMENT = FIRST_SEGMENT_BYTES  # 16384
cdef uint32_t _FILE_OTHER = OTHER_SEGMENT_BYTES  # 8388608
cdef uint32_t _DIR_OTHER = DIR_OTHER_SEGMENT_BYTES  # 262144
cdef Py_ssize_t _DIRECT_BLOCKS = DIRECT_BLOCKS  # 1024, block 0 is the inode
cdef Py_ssize_t _TREES = BMAP_TREE_COUNT  # 4
cdef uint32_t OB_DATA = Obtype.DATA
cdef uint32_t OB_DIRENTS = Obtype.DIRENTS
cdef uint32_t OB_VATTR = Obtype.VATTR
cdef uint32_t OB_BMAP = Obtype.BMAP
cdef uint32_t OB_INDIR = Obtype.INDIR
cdef uint32_t OB_BACK = Obtype.BACK
cdef uint32_t OB_DATABACK = Obtype.DATABACK
cdef uint32_t OB_EXTATTRS = Obtype.EXTATTRS
cdef uint32_t OB_NAME = Obtype.NAME

cdef enum:
    HEADER_LEN = 20  # magic, blobCount, realCount, type, reserved (u32 each)
    VATTR_HANDLE_LEN = 128  # header + u32 104 + 104-byte record, no padding
    VATTR_FIELDS = 17

cdef tuple _VATTR_NAMES = (
    "mode", "btype", "uid", "gid", "size", "mtime_sec", "mtime_nsec", "ctime_sec", "ctime_nsec",
    "atime_sec", "atime_nsec", "fsid", "fileid", "rdev_major", "rdev_minor", "nlink", "containerid",
)  # fmt: skip
cdef int _VATTR_BITS[VATTR_FIELDS]
_VATTR_BITS[:] = [16, 8, 32, 32, 64, 32, 32, 32, 32, 32, 32, 64, 64, 32, 32, 32, 64]

cdef tuple _NULL_ROOTS = (bytes(16),) * BMAP_TREE_COUNT


# --- handle framing (§7) -----------------------------------------------------


cdef inline Py_ssize_t _handle_len(Py_ssize_t real) noexcept nogil:
    """blobCount: header + payload, rounded up to 8."""
    return (real + 27) & ~(<Py_ssize_t>7)


cdef int _check_real(Py_ssize_t real) except -1:
    if real > 0xFFFFFFE0:
        raise EncodeError("handle payload of %d bytes is too large" % real)
    return 0


cdef inline unsigned char* _put_header(unsigned char* p, uint32_t obtype, Py_ssize_t real) noexcept nogil:
    p = put_u32(p, _MAGIC)
    p = put_u32(p, <uint32_t>_handle_len(real))
    p = put_u32(p, <uint32_t>real)
    p = put_u32(p, obtype)
    return put_u32(p, 0)  # reserved


cdef inline unsigned char* _put_padding(unsigned char* p, Py_ssize_t real) noexcept nogil:
    return put_zeros(p, _handle_len(real) - HEADER_LEN - real)


cdef inline unsigned char* _start(bytes out) noexcept:
    return <unsigned char*>PyBytes_AS_STRING(out)


cdef int _check_end(bytes out, unsigned char* p) except -1:
    if p != _start(out) + PyBytes_GET_SIZE(out):
        raise SystemError("records_c: encoder wrote %d of %d bytes" % (p - _start(out), PyBytes_GET_SIZE(out)))
    return 0


cdef int _struct_u32(object value, uint32_t* out) except -1:
    """Convert as ``struct.pack("<I", value)`` does, raising ``struct.error`` like the pure twin."""
    try:
        value = _index(value)
    except TypeError:
        raise struct.error("required argument is not an integer") from None
    if not 0 <= value <= 0xFFFFFFFFFFFFFFFF:
        raise struct.error("argument out of range")
    if value > 0xFFFFFFFF:
        raise struct.error("'I' format requires 0 <= number <= 4294967295")
    out[0] = value
    return 0


# --- length-prefixed values ----------------------------------------------------


cdef int _check_lp32(Py_ssize_t n) except -1:
    if <size_t>n > 0xFFFFFFFF:
        raise EncodeError("value of %d bytes is longer than a u32 length allows" % n)
    return 0


cdef bytes _id_bytes(object value):
    """``bytes(value)`` for one lp16 id, after the pure twin's ``len(value)`` check."""
    cdef Py_ssize_t n
    if PyBytes_CheckExact(value):
        n = PyBytes_GET_SIZE(value)
    else:
        n = len(value)
    if n > 0xFFFF:
        raise EncodeError("id of %d bytes is longer than a u16 length allows" % n)
    if PyBytes_CheckExact(value):
        return <bytes>value
    value = bytes(value)
    if PyBytes_GET_SIZE(value) > 0xFFFF:
        raise EncodeError("id of %d bytes is longer than a u16 length allows" % PyBytes_GET_SIZE(value))
    return <bytes>value


cdef tuple _ids(object ids, Py_ssize_t* nbytes):
    """The ids as a tuple of ``bytes``; adds their lp16 size, Σ(2 + len), to ``nbytes``.

    A tuple cannot change under us while we write, unlike the caller's list.
    """
    cdef tuple items = ids if type(ids) is tuple else tuple(ids)
    cdef Py_ssize_t i, n = len(items), total = 0
    cdef list converted = None
    for i in range(n):
        item = items[i]
        if not PyBytes_CheckExact(item) or PyBytes_GET_SIZE(item) > 0xFFFF:
            item = _id_bytes(item)
            if converted is None:
                converted = list(items)
            converted[i] = item
        total += 2 + PyBytes_GET_SIZE(item)
    nbytes[0] += total
    return items if converted is None else tuple(converted)


cdef unsigned char* _put_ids(unsigned char* p, tuple ids) noexcept:
    """Each id as lp16(id)."""
    cdef Py_ssize_t i, n
    cdef PyObject* item
    for i in range(PyTuple_GET_SIZE(ids)):
        item = PyTuple_GET_ITEM(ids, i)  # borrowed; every item is exact bytes (see _ids)
        n = PyBytes_GET_SIZE(<object>item)
        p = put_u16(p, <uint16_t>n)
        p = put_bytes(p, PyBytes_AS_STRING(<object>item), n)
    return p


# --- VATTR (§8.3) ------------------------------------------------------------


cdef int _vattr_error(int i, object value) except -1:
    raise EncodeError(
        "VATTR field %s=%r does not fit an unsigned %d-bit integer" % (_VATTR_NAMES[i], value, _VATTR_BITS[i])
    )


cdef int _vattr_values(object attrs, uint64_t* out) except -1:
    """Check the 17 VAttr-ordered fields against their widths and store them in ``out``."""
    cdef tuple values = attrs if type(attrs) is tuple else tuple(attrs)
    cdef Py_ssize_t n = len(values)
    cdef int i, bits
    cdef uint64_t v
    if n != VATTR_FIELDS:
        raise EncodeError("VATTR needs %d fields, got %d" % (VATTR_FIELDS, n))
    for i in range(VATTR_FIELDS):
        value = values[i]
        if not PyLong_Check(value):  # isinstance(value, int): bool and IntEnum pass
            _vattr_error(i, value)
        v = 0
        try:
            v = value
        except OverflowError:  # negative, or wider than 64 bits
            _vattr_error(i, value)
        bits = _VATTR_BITS[i]
        if bits < 64 and (v >> bits) != 0:
            _vattr_error(i, value)
        out[i] = v
    return 0


cdef unsigned char* _put_vattr(unsigned char* p, const uint64_t* v) noexcept nogil:
    """The 128-byte VATTR handle; ``v`` is in VAttr order (see records_py)."""
    p = _put_header(p, OB_VATTR, 4 + _RECORD_LEN)
    p = put_u32(p, _RECORD_LEN)
    # offsets below are within the 104-byte record
    p = put_u16(p, <uint16_t>v[0])  # @0 mode
    p = put_u8(p, <uint8_t>v[1])  # @2 btype
    p = put_u8(p, 0)  # @3 spare
    p = put_u32(p, 0)  # @4 flags
    p = put_u32(p, <uint32_t>v[2])  # @8 uid
    p = put_u32(p, <uint32_t>v[3])  # @12 gid
    p = put_u64(p, v[4])  # @16 length
    p = put_u64(p, 0)  # @24 dtime sec, nsec
    p = put_u32(p, <uint32_t>v[5])  # @32 mtime sec
    p = put_u32(p, <uint32_t>v[6])  # @36 mtime nsec
    p = put_u32(p, <uint32_t>v[7])  # @40 ctime sec
    p = put_u32(p, <uint32_t>v[8])  # @44 ctime nsec
    p = put_u32(p, <uint32_t>v[9])  # @48 atime sec
    p = put_u32(p, <uint32_t>v[10])  # @52 atime nsec
    p = put_u64(p, v[4])  # @56 used: the length again
    p = put_u64(p, v[11])  # @64 fsid
    p = put_u64(p, v[12])  # @72 fileid
    p = put_u32(p, <uint32_t>v[13])  # @80 rdev major
    p = put_u32(p, <uint32_t>v[14])  # @84 rdev minor
    p = put_u32(p, <uint32_t>v[15])  # @88 nlink
    p = put_u32(p, 0)  # @92 haVersion
    return put_u64(p, v[16])  # @96 containerid


# --- BMAP (§8.4) ---------------------------------------------------------------


cdef tuple _bmap_inputs(object own_fh, object segment_ids, object tree_roots, Py_ssize_t* real):
    """(own fh, segment ids, tree roots) as bytes, checked; sets the BMAP realCount."""
    cdef Py_ssize_t nsegs = len(segment_ids)
    cdef Py_ssize_t nroots
    if nsegs >= _DIRECT_BLOCKS:
        raise EncodeError(
            "a block map holds at most %d direct segments, got %d" % (_DIRECT_BLOCKS - 1, nsegs)
        )
    nroots = len(tree_roots)
    if nroots != _TREES:
        raise EncodeError("a block map has exactly %d tree roots, got %d" % (_TREES, nroots))
    return _bmap_ids(own_fh, segment_ids, tree_roots, real)


cdef tuple _bmap_ids(object own_fh, object segment_ids, object tree_roots, Py_ssize_t* real):
    cdef bytes fh = _id_bytes(own_fh)
    # first, other, direct count | lp16(own fh) | segments | u32 root count | roots
    real[0] = 12 + 2 + PyBytes_GET_SIZE(fh) + 4
    segs = _ids(segment_ids, real)
    roots = _ids(tree_roots, real)
    _check_real(real[0])
    return (fh, segs, roots)


cdef unsigned char* _put_bmap(unsigned char* p, uint32_t other, tuple inputs, Py_ssize_t real) noexcept:
    # inputs is _bmap_ids' (fh, segment ids, tree roots); borrowed items
    cdef bytes fh = <bytes>PyTuple_GET_ITEM(inputs, 0)
    cdef tuple segs = <tuple>PyTuple_GET_ITEM(inputs, 1)
    cdef tuple roots = <tuple>PyTuple_GET_ITEM(inputs, 2)
    p = _put_header(p, OB_BMAP, real)
    p = put_u32(p, _FIRST_SEGMENT)
    p = put_u32(p, other)
    p = put_u32(p, <uint32_t>(1 + len(segs)))  # direct[0] is the object itself
    p = put_u16(p, <uint16_t>PyBytes_GET_SIZE(fh))
    p = put_bytes(p, PyBytes_AS_STRING(fh), PyBytes_GET_SIZE(fh))
    p = _put_ids(p, segs)
    p = put_u32(p, <uint32_t>len(roots))
    p = _put_ids(p, roots)
    return _put_padding(p, real)


# --- id lists, lp32 values, DATABACK -----------------------------------------


cdef unsigned char* _put_id_list(unsigned char* p, uint32_t obtype, tuple ids, Py_ssize_t real) noexcept:
    """INDIR/BACK: u32 count, then lp16 ids."""
    p = _put_header(p, obtype, real)
    p = put_u32(p, <uint32_t>len(ids))
    p = _put_ids(p, ids)
    return _put_padding(p, real)


cdef unsigned char* _put_lp32_handle(unsigned char* p, uint32_t obtype, const Span* value) noexcept nogil:
    """DATA/NAME: lp32(value)."""
    p = _put_header(p, obtype, 4 + value.len)
    p = put_u32(p, <uint32_t>value.len)
    p = put_bytes(p, value.ptr, value.len)
    return _put_padding(p, 4 + value.len)


cdef unsigned char* _put_raw_handle(unsigned char* p, uint32_t obtype, const Span* payload) noexcept nogil:
    """DIRENTS (or any handle): the payload as is."""
    p = _put_header(p, obtype, payload.len)
    p = put_bytes(p, payload.ptr, payload.len)
    return _put_padding(p, payload.len)


cdef int _databack_fields(object ctime, object offset, uint32_t* c_ctime, uint64_t* c_offset) except -1:
    """Range-check ctime (u32) and offset (u64) as the pure twin does, and convert them."""
    cdef uint64_t v
    if PyLong_Check(ctime):
        try:
            v = ctime
        except OverflowError:
            v = 0x100000000
        if v > 0xFFFFFFFF:
            raise EncodeError("DATABACK ctime %r does not fit an unsigned 32-bit integer" % (ctime,))
        c_ctime[0] = <uint32_t>v
    elif not 0 <= ctime <= 0xFFFFFFFF:
        raise EncodeError("DATABACK ctime %r does not fit an unsigned 32-bit integer" % (ctime,))
    if PyLong_Check(offset):
        try:
            c_offset[0] = offset
        except OverflowError:
            raise EncodeError("DATABACK offset %r does not fit an unsigned 64-bit integer" % (offset,)) from None
    elif not 0 <= offset <= 0xFFFFFFFFFFFFFFFF:
        raise EncodeError("DATABACK offset %r does not fit an unsigned 64-bit integer" % (offset,))
    return 0


cdef int _databack_finish(object ctime, object offset, uint32_t* c_ctime, uint64_t* c_offset) except -1:
    """After the owner check: non-int (but in-range) values fail in struct.pack in the pure twin."""
    if not PyLong_Check(ctime):
        _struct_u32(ctime, c_ctime)
    if not PyLong_Check(offset):
        try:
            c_offset[0] = _index(offset)
        except TypeError:
            raise struct.error("required argument is not an integer") from None
    return 0


cdef int _check_owner(const Span* owner) except -1:
    if owner.len > 0xFFFF:
        raise EncodeError("id of %d bytes is longer than a u16 length allows" % owner.len)
    return 0


cdef inline Py_ssize_t _databack_real(const Span* owner) noexcept nogil:
    return 14 + owner.len  # u32 ctime | u64 offset | lp16(owner)


cdef unsigned char* _put_databack(unsigned char* p, uint32_t ctime, uint64_t offset, const Span* owner) noexcept nogil:
    cdef Py_ssize_t real = _databack_real(owner)
    p = _put_header(p, OB_DATABACK, real)
    p = put_u32(p, ctime)
    p = put_u64(p, offset)
    p = put_u16(p, <uint16_t>owner.len)
    p = put_bytes(p, owner.ptr, owner.len)
    return _put_padding(p, real)


# --- EXTATTRS (§8.8) ---------------------------------------------------------


cdef list _extattr_items(object pairs, Py_ssize_t* real):
    """The UTF-8 keys and values, alternating; sets the EXTATTRS realCount."""
    cdef list items = []
    cdef Py_ssize_t total = 4  # u32 pair count
    for key, value in pairs:
        for text in (key, value):
            encoded = text.encode("utf-8")
            if not PyBytes_CheckExact(encoded):  # as the pure twin's len() then bytes()
                len(encoded)
                encoded = bytes(encoded)
            _check_lp32(PyBytes_GET_SIZE(encoded))
            total += 4 + PyBytes_GET_SIZE(encoded)
            items.append(encoded)
    _check_real(total)
    real[0] = total
    return items


cdef unsigned char* _put_extattrs(unsigned char* p, list items, Py_ssize_t real) noexcept:
    cdef Py_ssize_t i, n
    cdef PyObject* item
    p = _put_header(p, OB_EXTATTRS, real)
    p = put_u32(p, <uint32_t>(PyList_GET_SIZE(items) // 2))
    for i in range(PyList_GET_SIZE(items)):
        item = PyList_GET_ITEM(items, i)  # borrowed; bytes from str.encode
        n = PyBytes_GET_SIZE(<object>item)
        p = put_u32(p, <uint32_t>n)
        p = put_bytes(p, PyBytes_AS_STRING(<object>item), n)
    return _put_padding(p, real)


# --- single handles ------------------------------------------------------------


def encode_handle(obtype, payload):
    """Frame ``payload`` as one handle of type ``obtype`` (§7)."""
    cdef Span span
    cdef uint32_t t
    cdef bytes out
    keep = span_open_buffer(&span, payload)
    try:
        _check_real(span.len)
        _struct_u32(obtype, &t)
        out = PyBytes_FromStringAndSize(NULL, _handle_len(span.len))
        _check_end(out, _put_raw_handle(_start(out), t, &span))
        return out
    finally:
        span_close(&span)


def encode_data(data):
    """DATA handle (§8.1): ``lp32(data)``."""
    cdef Span span
    cdef bytes out
    keep = span_open(&span, data, True)
    try:
        _check_lp32(span.len)
        _check_real(4 + span.len)
        out = PyBytes_FromStringAndSize(NULL, _handle_len(4 + span.len))
        _check_end(out, _put_lp32_handle(_start(out), OB_DATA, &span))
        return out
    finally:
        span_close(&span)


def encode_dirents(entries):
    """DIRENTS handle (§8.2) around already packed entries (see ``dirents``)."""
    cdef Span span
    cdef bytes out
    keep = span_open(&span, entries, False)
    try:
        _check_real(span.len)
        out = PyBytes_FromStringAndSize(NULL, _handle_len(span.len))
        _check_end(out, _put_raw_handle(_start(out), OB_DIRENTS, &span))
        return out
    finally:
        span_close(&span)


def encode_vattr(attrs):
    """VATTR handle (§8.3): always 128 bytes. Raises EncodeError on out-of-range fields."""
    cdef uint64_t v[VATTR_FIELDS]
    _vattr_values(attrs, v)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, VATTR_HANDLE_LEN)
    _check_end(out, _put_vattr(_start(out), v))
    return out


def encode_bmap(own_fh, segment_ids, tree_roots, other_segment_bytes=OTHER_SEGMENT_BYTES):
    """BMAP handle (§8.4). ``direct = [own_fh, *segment_ids]``; exactly 4 tree roots."""
    cdef Py_ssize_t real, nsegs, nroots
    cdef uint32_t other
    nsegs = len(segment_ids)
    if nsegs >= _DIRECT_BLOCKS:
        raise EncodeError(
            "a block map holds at most %d direct segments, got %d" % (_DIRECT_BLOCKS - 1, nsegs)
        )
    nroots = len(tree_roots)
    if nroots != _TREES:
        raise EncodeError("a block map has exactly %d tree roots, got %d" % (_TREES, nroots))
    _struct_u32(other_segment_bytes, &other)
    inputs = _bmap_ids(own_fh, segment_ids, tree_roots, &real)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, _handle_len(real))
    _check_end(out, _put_bmap(_start(out), other, inputs, real))
    return out


def encode_indir(ids):
    """INDIR handle (§8.5): ``u32 count`` and the child ids; count may be 0."""
    cdef Py_ssize_t real = 4
    items = _ids(ids, &real)
    _check_real(real)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, _handle_len(real))
    _check_end(out, _put_id_list(_start(out), OB_INDIR, items, real))
    return out


def encode_back(fhs):
    """BACK handle (§8.6): the parent directories, duplicates allowed."""
    cdef Py_ssize_t real = 4
    items = _ids(fhs, &real)
    _check_real(real)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, _handle_len(real))
    _check_end(out, _put_id_list(_start(out), OB_BACK, items, real))
    return out


def encode_databack(ctime, offset, owner):
    """DATABACK handle (§8.7): owner's whole-second ctime, offset, owner fh."""
    cdef uint32_t c_ctime = 0
    cdef uint64_t c_offset = 0
    cdef Span span
    cdef bytes out
    _databack_fields(ctime, offset, &c_ctime, &c_offset)
    keep = span_open(&span, owner, True)
    try:
        _check_owner(&span)
        _databack_finish(ctime, offset, &c_ctime, &c_offset)
        out = PyBytes_FromStringAndSize(NULL, _handle_len(_databack_real(&span)))
        _check_end(out, _put_databack(_start(out), c_ctime, c_offset, &span))
        return out
    finally:
        span_close(&span)


def encode_extattrs(pairs):
    """EXTATTRS handle (§8.8): string pairs in the given order, UTF-8 encoded."""
    cdef Py_ssize_t real
    items = _extattr_items(pairs, &real)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, _handle_len(real))
    _check_end(out, _put_extattrs(_start(out), items, real))
    return out


def encode_name(name):
    """NAME handle (§8.9): the raw name bytes."""
    cdef Span span
    cdef bytes out
    keep = span_open(&span, name, True)
    try:
        _check_lp32(span.len)
        _check_real(4 + span.len)
        out = PyBytes_FromStringAndSize(NULL, _handle_len(4 + span.len))
        _check_end(out, _put_lp32_handle(_start(out), OB_NAME, &span))
        return out
    finally:
        span_close(&span)


# --- object bodies (§9) ------------------------------------------------------


def encode_file_inode(attrs, fh, segment_ids, tree_roots, backpointers, name, data):
    """Body of a non-directory inode (§9.1-§9.3): VATTR, BMAP, BACK, NAME[, DATA]."""
    cdef uint64_t v[VATTR_FIELDS]
    cdef Py_ssize_t bmap_real, back_real = 4, size
    cdef Span sname, sdata
    cdef bint has_data = data is not None
    cdef bytes out
    cdef unsigned char* p
    _vattr_values(attrs, v)
    bmap = _bmap_inputs(fh, segment_ids, tree_roots or _NULL_ROOTS, &bmap_real)
    backs = _ids(backpointers, &back_real)
    _check_real(back_real)
    sdata.has_view = False
    keep_name = span_open(&sname, name, True)
    try:
        _check_lp32(sname.len)
        _check_real(4 + sname.len)
        size = VATTR_HANDLE_LEN + _handle_len(bmap_real) + _handle_len(back_real) + _handle_len(4 + sname.len)
        if has_data:
            keep_data = span_open(&sdata, data, True)
            _check_lp32(sdata.len)
            _check_real(4 + sdata.len)
            size += _handle_len(4 + sdata.len)
        out = PyBytes_FromStringAndSize(NULL, size)
        p = _put_vattr(_start(out), v)
        p = _put_bmap(p, _FILE_OTHER, bmap, bmap_real)
        p = _put_id_list(p, OB_BACK, backs, back_real)
        p = _put_lp32_handle(p, OB_NAME, &sname)
        if has_data:
            p = _put_lp32_handle(p, OB_DATA, &sdata)
        _check_end(out, p)
        return out
    finally:
        span_close(&sdata)
        span_close(&sname)


def encode_dir_inode(attrs, fh, segment_ids, tree_roots, name, entries, extattrs=None):
    """Body of a directory inode (§9.4, §9.5): VATTR, BMAP, NAME, DIRENTS[, EXTATTRS]."""
    cdef uint64_t v[VATTR_FIELDS]
    cdef Py_ssize_t bmap_real, ext_real = 0, size
    cdef Span sname, sentries
    cdef list ext = None
    cdef bytes out
    cdef unsigned char* p
    _vattr_values(attrs, v)
    bmap = _bmap_inputs(fh, segment_ids, tree_roots or _NULL_ROOTS, &bmap_real)
    sentries.has_view = False
    keep_name = span_open(&sname, name, True)
    try:
        _check_lp32(sname.len)
        _check_real(4 + sname.len)
        keep_entries = span_open(&sentries, entries, False)
        _check_real(sentries.len)
        if extattrs is not None:
            ext = _extattr_items(extattrs, &ext_real)
        size = (
            VATTR_HANDLE_LEN + _handle_len(bmap_real) + _handle_len(4 + sname.len) + _handle_len(sentries.len)
        )
        if ext is not None:
            size += _handle_len(ext_real)
        out = PyBytes_FromStringAndSize(NULL, size)
        p = _put_vattr(_start(out), v)
        p = _put_bmap(p, _DIR_OTHER, bmap, bmap_real)
        p = _put_lp32_handle(p, OB_NAME, &sname)
        p = _put_raw_handle(p, OB_DIRENTS, &sentries)
        if ext is not None:
            p = _put_extattrs(p, ext, ext_real)
        _check_end(out, p)
        return out
    finally:
        span_close(&sentries)
        span_close(&sname)


def encode_file_segment(data, ctime, offset, owner):
    """Body of a file data segment (§9.6): DATA, DATABACK."""
    cdef uint32_t c_ctime = 0
    cdef uint64_t c_offset = 0
    cdef Span sdata, sowner
    cdef bytes out
    cdef unsigned char* p
    cdef Py_ssize_t size
    sowner.has_view = False
    keep_data = span_open(&sdata, data, True)
    try:
        _check_lp32(sdata.len)
        _check_real(4 + sdata.len)
        _databack_fields(ctime, offset, &c_ctime, &c_offset)
        keep_owner = span_open(&sowner, owner, True)
        _check_owner(&sowner)
        _databack_finish(ctime, offset, &c_ctime, &c_offset)
        size = _handle_len(4 + sdata.len) + _handle_len(_databack_real(&sowner))
        out = PyBytes_FromStringAndSize(NULL, size)
        p = _start(out)
        if size >= 65536:
            with nogil:  # an 8 MiB copy: let other threads run
                p = _put_lp32_handle(p, OB_DATA, &sdata)
                p = _put_databack(p, c_ctime, c_offset, &sowner)
        else:
            p = _put_lp32_handle(p, OB_DATA, &sdata)
            p = _put_databack(p, c_ctime, c_offset, &sowner)
        _check_end(out, p)
        return out
    finally:
        span_close(&sowner)
        span_close(&sdata)


def encode_file_segment_parts(parts, ctime, offset, owner, prefix=b""):
    """:func:`encode_file_segment` of the concatenation of ``parts`` (a segment read in pieces), joined once, in the body."""
    cdef uint32_t c_ctime = 0
    cdef uint64_t c_offset = 0
    cdef Span sowner, sprefix
    cdef Span* spans = NULL
    cdef Py_ssize_t count, i, total = 0, size
    cdef bytes out
    cdef unsigned char* p
    cdef list keep = []
    sowner.has_view = False
    sprefix.has_view = False
    items = list(parts)  # what b"".join(parts) iterates
    count = len(items)
    spans = <Span*>calloc(count if count else 1, sizeof(Span))
    if spans == NULL:
        raise MemoryError()
    try:
        for i in range(count):
            # b"".join takes bytes-like objects only (TypeError otherwise), as span_open_buffer does
            keep.append(span_open_buffer(&spans[i], items[i]))
            total += spans[i].len
        _check_lp32(total)
        _check_real(4 + total)
        _databack_fields(ctime, offset, &c_ctime, &c_offset)
        keep.append(span_open(&sowner, owner, True))
        _check_owner(&sowner)
        _databack_finish(ctime, offset, &c_ctime, &c_offset)
        keep.append(span_open_buffer(&sprefix, prefix))  # bytes-like only, as memoryview(prefix) in the twin
        size = sprefix.len + _handle_len(4 + total) + _handle_len(_databack_real(&sowner))
        out = PyBytes_FromStringAndSize(NULL, size)
        p = _start(out)
        with nogil:  # up to 8 MiB of copies: let other threads run
            p = put_bytes(p, sprefix.ptr, sprefix.len)
            p = _put_header(p, OB_DATA, 4 + total)
            p = put_u32(p, <uint32_t>total)
            for i in range(count):
                p = put_bytes(p, spans[i].ptr, spans[i].len)
            p = _put_padding(p, 4 + total)
            p = _put_databack(p, c_ctime, c_offset, &sowner)
        _check_end(out, p)
        return out
    finally:
        span_close(&sprefix)
        span_close(&sowner)
        for i in range(count):
            span_close(&spans[i])
        free(spans)


cdef Span _EMPTY  # the empty DATA of a directory segment (§9.7)
_EMPTY.ptr = <const unsigned char*>b""
_EMPTY.len = 0
_EMPTY.has_view = False


def encode_dir_segment(entries, ctime, offset, owner):
    """Body of a directory segment (§9.7): DIRENTS, an empty DATA, DATABACK."""
    cdef uint32_t c_ctime = 0
    cdef uint64_t c_offset = 0
    cdef Span sentries, sowner
    cdef bytes out
    cdef unsigned char* p
    sowner.has_view = False
    keep_entries = span_open(&sentries, entries, False)
    try:
        _check_real(sentries.len)
        _databack_fields(ctime, offset, &c_ctime, &c_offset)
        keep_owner = span_open(&sowner, owner, True)
        _check_owner(&sowner)
        _databack_finish(ctime, offset, &c_ctime, &c_offset)
        out = PyBytes_FromStringAndSize(
            NULL, _handle_len(sentries.len) + _handle_len(4) + _handle_len(_databack_real(&sowner))
        )
        p = _put_raw_handle(_start(out), OB_DIRENTS, &sentries)
        p = _put_lp32_handle(p, OB_DATA, &_EMPTY)
        p = _put_databack(p, c_ctime, c_offset, &sowner)
        _check_end(out, p)
        return out
    finally:
        span_close(&sowner)
        span_close(&sentries)


def encode_indirect_block(ids, ctime, offset, owner):
    """Body of an indirect block (§9.8): INDIR, DATABACK (offset = tree << 16 | level)."""
    cdef uint32_t c_ctime = 0
    cdef uint64_t c_offset = 0
    cdef Py_ssize_t real = 4
    cdef Span sowner
    cdef bytes out
    cdef unsigned char* p
    items = _ids(ids, &real)
    _check_real(real)
    _databack_fields(ctime, offset, &c_ctime, &c_offset)
    keep_owner = span_open(&sowner, owner, True)
    try:
        _check_owner(&sowner)
        _databack_finish(ctime, offset, &c_ctime, &c_offset)
        out = PyBytes_FromStringAndSize(NULL, _handle_len(real) + _handle_len(_databack_real(&sowner)))
        p = _put_id_list(_start(out), OB_INDIR, items, real)
        p = _put_databack(p, c_ctime, c_offset, &sowner)
        _check_end(out, p)
        return out
    finally:
        span_close(&sowner)
