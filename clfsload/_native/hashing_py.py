"""Object-id hashes and blob names: the pure-Python twin (spec §3, §4).

This module is the specification of ``hashing_c``: same names, arguments,
results and exceptions.
"""

from ..clfs.constants import (
    BUCKET_ID,
    NAME_VERSION_V1,
    NAME_VERSION_V2,
    OBJ_VERSION_INITIAL,
    ROOT_ID,
    SNAPSHOT_ID,
    Btype,
)
from ..errors import EncodeError

__all__ = [
    "fnv1_variant",
    "murmur2",
    "hash64",
    "blob_name",
    "bucket_blob_name",
    "name_prefix",
]

_MASK32 = 0xFFFFFFFF
_FNV_PRIME = 0x01000193
_MURMUR_SEED = 0x8C6749AD
_MURMUR_M = 0x5BD1E995


def fnv1_variant(data: bytes) -> int:
    """CLFS's FNV-1 variant (§3.1): FNV-1 started from 0 instead of the offset basis.

    Leading zero bytes therefore contribute nothing.
    """
    h = 0
    for b in bytes(data):
        h = ((h * _FNV_PRIME) & _MASK32) ^ b
    return h


def murmur2(data: bytes) -> int:
    """32-bit MurmurHash2 (Appleby) with CLFS's seed 0x8C6749AD (§3.2)."""
    data = bytes(data)
    n = len(data)
    h = (_MURMUR_SEED ^ n) & _MASK32
    full = n & ~3
    for i in range(0, full, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _MURMUR_M) & _MASK32
        k ^= k >> 24
        k = (k * _MURMUR_M) & _MASK32
        h = ((h * _MURMUR_M) & _MASK32) ^ k
    tail = n & 3
    if tail:
        if tail == 3:
            h ^= data[full + 2] << 16
        if tail >= 2:
            h ^= data[full + 1] << 8
        h ^= data[full]
        h = (h * _MURMUR_M) & _MASK32
    h ^= h >> 13
    h = (h * _MURMUR_M) & _MASK32
    h ^= h >> 15
    return h


def hash64(obj_id: bytes) -> int:
    """The 64-bit name hash of an object id: fnv1_variant high, murmur2 low (§3.3)."""
    return (fnv1_variant(obj_id) << 32) | murmur2(obj_id)


def _check_version(version: int) -> None:
    if not 0 <= version <= 99999999999:
        raise EncodeError("object version %r does not fit the 11 digits of a blob name" % (version,))


def name_prefix(obj_id: bytes) -> str:
    """The listing prefix shared by every version of ``obj_id``'s blob (§4.6).

    V1 form (``%08X_HEX.``) for the bucket, V2 form (``%016X_HEX.``) otherwise.
    """
    obj_id = bytes(obj_id)
    if obj_id == BUCKET_ID:
        return "%08X_%s." % (fnv1_variant(obj_id), obj_id.hex().upper())
    return "%016X_%s." % (hash64(obj_id), obj_id.hex().upper())


def blob_name(obj_id: bytes, btype: int, owner_id: bytes, version: int = OBJ_VERSION_INITIAL) -> str:
    """The V2 blob name of an object (§4.1).

    For the root id the owner is forced to the root and the type to DIR,
    whatever the caller passes, as the reference does.
    """
    obj_id = bytes(obj_id)
    if obj_id == ROOT_ID:
        owner_id = ROOT_ID
        btype = Btype.DIR
    if not 0 <= btype <= 9999:
        raise EncodeError("btype %r does not fit a blob name" % (btype,))
    _check_version(version)
    return "%016X_%s.%04u.%016X.%011u.%08X.%04u" % (
        hash64(obj_id),
        obj_id.hex().upper(),
        btype,
        hash64(owner_id),
        version,
        SNAPSHOT_ID,
        NAME_VERSION_V2,
    )


def bucket_blob_name(version: int = OBJ_VERSION_INITIAL) -> str:
    """The V1 name of the bucket object (§4.2); constant in practice."""
    _check_version(version)
    return "%08X_%s.%011u.%08X.%04u" % (
        fnv1_variant(BUCKET_ID),
        BUCKET_ID.hex().upper(),
        version,
        SNAPSHOT_ID,
        NAME_VERSION_V1,
    )
