"""Object-id hashes and blob names: the compiled twin of ``hashing_py`` (spec §3, §4).

Same names, arguments, results and exceptions as ``hashing_py``, whose
docstrings are the specification. Names are written straight into a new
ASCII ``str``.
"""

from cpython.long cimport PyLong_Check
from cpython.unicode cimport PyUnicode_1BYTE_DATA, PyUnicode_New
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp

from ._buffer cimport Span, span_close, span_open

from ..clfs.constants import BUCKET_ID, NAME_VERSION_V1, NAME_VERSION_V2, OBJ_VERSION_INITIAL, ROOT_ID, SNAPSHOT_ID, Btype
from ..errors import EncodeError

__all__ = [
    "fnv1_variant",
    "murmur2",
    "hash64",
    "blob_name",
    "bucket_blob_name",
    "name_prefix",
]

cdef extern from *:
    """
    #define CLFS_FNV_PRIME 0x01000193u
    #define CLFS_MURMUR_SEED 0x8C6749ADu
    #define CLFS_MURMUR_M 0x5BD1E995u
    """
    const uint32_t FNV_PRIME "CLFS_FNV_PRIME"
    const uint32_t MURMUR_SEED "CLFS_MURMUR_SEED"
    const uint32_t MURMUR_M "CLFS_MURMUR_M"

cdef object VERSION_MAX = 99999999999  # the 11 decimal digits of a name's version field
cdef object BTYPE_MAX = 9999  # the 4 digits of its btype field

cdef bytes _ROOT_ID = ROOT_ID
cdef bytes _BUCKET_ID = BUCKET_ID
cdef object _BTYPE_DIR = Btype.DIR
cdef uint32_t _SNAPSHOT_ID = SNAPSHOT_ID
cdef unsigned _V1 = NAME_VERSION_V1
cdef unsigned _V2 = NAME_VERSION_V2
cdef const char* _HEX = b"0123456789ABCDEF"


# --- hashes (§3) ---------------------------------------------------------------


cdef inline uint32_t _fnv1(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef uint32_t h = 0  # not the FNV offset basis: CLFS's variant starts at 0
    cdef Py_ssize_t i
    for i in range(n):
        h = (h * FNV_PRIME) ^ p[i]
    return h


cdef inline uint32_t _murmur2(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef uint32_t h = MURMUR_SEED ^ <uint32_t>n
    cdef uint32_t k
    cdef Py_ssize_t i, full = n & ~3
    for i in range(0, full, 4):
        k = p[i] | (<uint32_t>p[i + 1] << 8) | (<uint32_t>p[i + 2] << 16) | (<uint32_t>p[i + 3] << 24)
        k *= MURMUR_M
        k ^= k >> 24
        k *= MURMUR_M
        h = (h * MURMUR_M) ^ k
    cdef Py_ssize_t tail = n & 3
    if tail:
        if tail == 3:
            h ^= <uint32_t>p[full + 2] << 16
        if tail >= 2:
            h ^= <uint32_t>p[full + 1] << 8
        h ^= p[full]
        h *= MURMUR_M
    h ^= h >> 13
    h *= MURMUR_M
    h ^= h >> 15
    return h


cdef inline uint64_t _hash64(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    return (<uint64_t>_fnv1(p, n) << 32) | _murmur2(p, n)


def fnv1_variant(data):
    """CLFS's FNV-1 variant (§3.1): FNV-1 started from 0 instead of the offset basis."""
    cdef Span span
    keep = span_open(&span, data, False)
    try:
        return _fnv1(span.ptr, span.len)
    finally:
        span_close(&span)


def murmur2(data):
    """32-bit MurmurHash2 (Appleby) with CLFS's seed 0x8C6749AD (§3.2)."""
    cdef Span span
    keep = span_open(&span, data, False)
    try:
        return _murmur2(span.ptr, span.len)
    finally:
        span_close(&span)


def hash64(obj_id):
    """The 64-bit name hash of an object id: fnv1_variant high, murmur2 low (§3.3)."""
    cdef Span span
    keep = span_open(&span, obj_id, False)
    try:
        return _hash64(span.ptr, span.len)
    finally:
        span_close(&span)


# --- name formatting (§4) ----------------------------------------------------


cdef inline uint8_t* _put_hex(uint8_t* out, uint64_t value, int digits) noexcept nogil:
    """``%0<digits>X`` of a value known to fit."""
    cdef int i
    for i in range(digits - 1, -1, -1):
        out[i] = _HEX[value & 0xF]
        value >>= 4
    return out + digits


cdef inline uint8_t* _put_dec(uint8_t* out, uint64_t value, int digits) noexcept nogil:
    """``%0<digits>u`` of a value known to fit."""
    cdef int i
    for i in range(digits - 1, -1, -1):
        out[i] = <uint8_t>(0x30 + value % 10)  # 0x30 == ord("0")
        value //= 10
    return out + digits


cdef inline uint8_t* _put_id_hex(uint8_t* out, const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """HEX(id): upper-case, two digits per byte."""
    cdef Py_ssize_t i
    for i in range(n):
        out[2 * i] = _HEX[p[i] >> 4]
        out[2 * i + 1] = _HEX[p[i] & 0xF]
    return out + 2 * n


cdef inline bint _is_id(const Span* span, bytes well_known) noexcept:
    return span.len == len(well_known) and memcmp(span.ptr, <const char*>well_known, span.len) == 0


cdef int _check_version(object version) except -1:
    if not 0 <= version <= VERSION_MAX:
        raise EncodeError("object version %r does not fit the 11 digits of a blob name" % (version,))
    return 0


def name_prefix(obj_id):
    """The listing prefix shared by every version of ``obj_id``'s blob (§4.6)."""
    cdef Span span
    cdef uint8_t* p
    keep = span_open(&span, obj_id, False)
    try:
        if _is_id(&span, _BUCKET_ID):
            # "%08X_%s." (V1)
            text = PyUnicode_New(8 + 1 + 2 * span.len + 1, 127)
            p = PyUnicode_1BYTE_DATA(text)
            p = _put_hex(p, _fnv1(span.ptr, span.len), 8)
        else:
            # "%016X_%s." (V2)
            text = PyUnicode_New(16 + 1 + 2 * span.len + 1, 127)
            p = PyUnicode_1BYTE_DATA(text)
            p = _put_hex(p, _hash64(span.ptr, span.len), 16)
        p[0] = ord("_")
        p = _put_id_hex(p + 1, span.ptr, span.len)
        p[0] = ord(".")
        return text
    finally:
        span_close(&span)


def blob_name(obj_id, btype, owner_id, version=OBJ_VERSION_INITIAL):
    """The V2 blob name of an object (§4.1); the root id forces owner = root and btype = DIR."""
    cdef Span span, owner
    cdef uint64_t owner_hash, c_btype, c_version
    cdef uint8_t* p
    keep = span_open(&span, obj_id, False)
    try:
        if _is_id(&span, _ROOT_ID):
            owner_id = _ROOT_ID
            btype = _BTYPE_DIR
        if not 0 <= btype <= BTYPE_MAX:
            raise EncodeError("btype %r does not fit a blob name" % (btype,))
        _check_version(version)
        keep_owner = span_open(&owner, owner_id, False)
        try:
            owner_hash = _hash64(owner.ptr, owner.len)
        finally:
            span_close(&owner)
        if not (PyLong_Check(btype) and PyLong_Check(version)):
            # e.g. a float: format exactly as the pure twin's "%u" would
            return "%016X_%s.%04u.%016X.%011u.%08X.%04u" % (
                _hash64(span.ptr, span.len),
                (<const char*>span.ptr)[: span.len].hex().upper(),
                btype,
                owner_hash,
                version,
                _SNAPSHOT_ID,
                _V2,
            )
        c_btype = btype
        c_version = version
        # "%016X_%s.%04u.%016X.%011u.%08X.%04u": 65 characters plus the hex id
        text = PyUnicode_New(65 + 2 * span.len, 127)
        p = PyUnicode_1BYTE_DATA(text)
        p = _put_hex(p, _hash64(span.ptr, span.len), 16)
        p[0] = ord("_")
        p = _put_id_hex(p + 1, span.ptr, span.len)
        p[0] = ord(".")
        p = _put_dec(p + 1, c_btype, 4)
        p[0] = ord(".")
        p = _put_hex(p + 1, owner_hash, 16)
        p[0] = ord(".")
        p = _put_dec(p + 1, c_version, 11)
        p[0] = ord(".")
        p = _put_hex(p + 1, _SNAPSHOT_ID, 8)
        p[0] = ord(".")
        _put_dec(p + 1, _V2, 4)
        return text
    finally:
        span_close(&span)


def bucket_blob_name(version=OBJ_VERSION_INITIAL):
    """The V1 name of the bucket object (§4.2); constant in practice."""
    _check_version(version)
    return "%08X_%s.%011u.%08X.%04u" % (
        _fnv1(<const unsigned char*>(<const char*>_BUCKET_ID), len(_BUCKET_ID)),
        _BUCKET_ID.hex().upper(),
        version,
        _SNAPSHOT_ID,
        _V1,
    )
