"""Handle and object-body encoders: the pure-Python twin (spec §7-§9).

Every ``encode_<handle>`` returns one complete handle: the 20-byte header
(magic, blobCount, realCount, type, 0), the payload, and zero padding to a
multiple of 8. The ``encode_<object>`` functions return a whole object body,
handles in the order of §9. Bodies still need :func:`envelope.wrap`.

``tree_roots`` is four ids (NULL id = unused tree); an empty sequence
stands for four NULL ids. ``attrs`` is any 17-item sequence in the order of
:class:`clfsload.clfs.vattr.VAttr`: mode, btype, uid, gid, size, mtime_sec,
mtime_nsec, ctime_sec, ctime_nsec, atime_sec, atime_nsec, fsid, fileid,
rdev_major, rdev_minor, nlink, containerid.
"""

import struct
from typing import Iterable, Optional, Sequence, Tuple

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

_HEADER = struct.Struct("<5I")
# VATTR record (§8.3): mode u16, btype u8, spare u8, flags u32, uid, gid,
# size u64, dtime/mtime/ctime/atime (u32 sec, u32 nsec each), used u64,
# fsid u64, fileid u64, rdev major/minor u32, nlink u32, haVersion u32,
# containerid u64. The leading u32 is the record length, 104.
_VATTR = struct.Struct("<I HBBI II Q II II II II Q Q Q II II Q")
_VATTR_FIELDS = (
    "mode", "btype", "uid", "gid", "size", "mtime_sec", "mtime_nsec", "ctime_sec", "ctime_nsec",
    "atime_sec", "atime_nsec", "fsid", "fileid", "rdev_major", "rdev_minor", "nlink", "containerid",
)  # fmt: skip
_VATTR_LIMITS = (16, 8, 32, 32, 64, 32, 32, 32, 32, 32, 32, 64, 64, 32, 32, 32, 64)
_DATABACK = struct.Struct("<IQH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_ZEROS = bytes(8)


def encode_handle(obtype: int, payload: bytes) -> bytes:
    """Frame ``payload`` as one handle of type ``obtype`` (§7)."""
    real = len(payload)
    if real > 0xFFFFFFE0:
        raise EncodeError("handle payload of %d bytes is too large" % real)
    count = (real + 27) & ~7  # header + payload, rounded up to 8
    return b"".join((_HEADER.pack(HANDLE_MAGIC, count, real, obtype, 0), payload, _ZEROS[: count - 20 - real]))


def _lp16(value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise EncodeError("id of %d bytes is longer than a u16 length allows" % len(value))
    return _U16.pack(len(value)) + bytes(value)


def _lp32(value: bytes) -> bytes:
    if len(value) > 0xFFFFFFFF:
        raise EncodeError("value of %d bytes is longer than a u32 length allows" % len(value))
    return _U32.pack(len(value)) + bytes(value)


def _lp16_list(ids: Iterable[bytes]) -> bytes:
    items = [_lp16(i) for i in ids]
    return _U32.pack(len(items)) + b"".join(items)


def encode_data(data: bytes) -> bytes:
    """DATA handle (§8.1): ``lp32(data)``."""
    return encode_handle(Obtype.DATA, _lp32(data))


def encode_dirents(entries: bytes) -> bytes:
    """DIRENTS handle (§8.2) around already packed entries (see ``dirents``)."""
    return encode_handle(Obtype.DIRENTS, bytes(entries))


def encode_vattr(attrs: Sequence[int]) -> bytes:
    """VATTR handle (§8.3): always 128 bytes. Raises EncodeError on out-of-range fields."""
    values = tuple(attrs)
    if len(values) != len(_VATTR_FIELDS):
        raise EncodeError("VATTR needs %d fields, got %d" % (len(_VATTR_FIELDS), len(values)))
    for name, value, bits in zip(_VATTR_FIELDS, values, _VATTR_LIMITS):
        if not isinstance(value, int) or not 0 <= value < (1 << bits):
            raise EncodeError("VATTR field %s=%r does not fit an unsigned %d-bit integer" % (name, value, bits))
    (mode, btype, uid, gid, size, msec, mnsec, csec, cnsec, asec, ansec,
     fsid, fileid, major, minor, nlink, containerid) = values  # fmt: skip
    record = _VATTR.pack(
        VATTR_RECORD_LEN, mode, btype, 0, 0, uid, gid, size, 0, 0, msec, mnsec, csec, cnsec,
        asec, ansec, size, fsid, fileid, major, minor, nlink, 0, containerid,
    )  # fmt: skip
    return encode_handle(Obtype.VATTR, record)


def encode_bmap(
    own_fh: bytes,
    segment_ids: Sequence[bytes],
    tree_roots: Sequence[bytes],
    other_segment_bytes: int = OTHER_SEGMENT_BYTES,
) -> bytes:
    """BMAP handle (§8.4). ``direct = [own_fh, *segment_ids]``; exactly 4 tree roots."""
    if len(segment_ids) >= DIRECT_BLOCKS:
        raise EncodeError("a block map holds at most %d direct segments, got %d" % (DIRECT_BLOCKS - 1, len(segment_ids)))
    if len(tree_roots) != BMAP_TREE_COUNT:
        raise EncodeError("a block map has exactly %d tree roots, got %d" % (BMAP_TREE_COUNT, len(tree_roots)))
    payload = b"".join(
        (
            struct.pack("<III", FIRST_SEGMENT_BYTES, other_segment_bytes, 1 + len(segment_ids)),
            _lp16(own_fh),
            b"".join(_lp16(i) for i in segment_ids),
            _lp16_list(tree_roots),
        )
    )
    return encode_handle(Obtype.BMAP, payload)


def encode_indir(ids: Sequence[bytes]) -> bytes:
    """INDIR handle (§8.5): ``u32 count`` and the child ids; count may be 0."""
    return encode_handle(Obtype.INDIR, _lp16_list(ids))


def encode_back(fhs: Sequence[bytes]) -> bytes:
    """BACK handle (§8.6): the parent directories, duplicates allowed."""
    return encode_handle(Obtype.BACK, _lp16_list(fhs))


def encode_databack(ctime: int, offset: int, owner: bytes) -> bytes:
    """DATABACK handle (§8.7): owner's whole-second ctime, offset, owner fh."""
    if not 0 <= ctime <= 0xFFFFFFFF:
        raise EncodeError("DATABACK ctime %r does not fit an unsigned 32-bit integer" % (ctime,))
    if not 0 <= offset <= 0xFFFFFFFFFFFFFFFF:
        raise EncodeError("DATABACK offset %r does not fit an unsigned 64-bit integer" % (offset,))
    if len(owner) > 0xFFFF:
        raise EncodeError("id of %d bytes is longer than a u16 length allows" % len(owner))
    return encode_handle(Obtype.DATABACK, _DATABACK.pack(ctime, offset, len(owner)) + bytes(owner))


def encode_extattrs(pairs: Iterable[Tuple[str, str]]) -> bytes:
    """EXTATTRS handle (§8.8): string pairs in the given order, UTF-8 encoded."""
    items = []
    for key, value in pairs:
        items.append(_lp32(key.encode("utf-8")))
        items.append(_lp32(value.encode("utf-8")))
    return encode_handle(Obtype.EXTATTRS, _U32.pack(len(items) // 2) + b"".join(items))


def encode_name(name: bytes) -> bytes:
    """NAME handle (§8.9): the raw name bytes."""
    return encode_handle(Obtype.NAME, _lp32(name))


_NULL_ROOTS = (bytes(16),) * BMAP_TREE_COUNT


def encode_file_inode(
    attrs: Sequence[int],
    fh: bytes,
    segment_ids: Sequence[bytes],
    tree_roots: Sequence[bytes],
    backpointers: Sequence[bytes],
    name: bytes,
    data: Optional[bytes],
) -> bytes:
    """Body of a non-directory inode (§9.1-§9.3): VATTR, BMAP, BACK, NAME[, DATA].

    ``data`` is the first segment of a regular file or a symlink target; pass
    None for devices, FIFOs and sockets, which have no DATA handle.
    """
    parts = [
        encode_vattr(attrs),
        encode_bmap(fh, segment_ids, tree_roots or _NULL_ROOTS, OTHER_SEGMENT_BYTES),
        encode_back(backpointers),
        encode_name(name),
    ]
    if data is not None:
        parts.append(encode_data(data))
    return b"".join(parts)


def encode_dir_inode(
    attrs: Sequence[int],
    fh: bytes,
    segment_ids: Sequence[bytes],
    tree_roots: Sequence[bytes],
    name: bytes,
    entries: bytes,
    extattrs: Optional[Sequence[Tuple[str, str]]] = None,
) -> bytes:
    """Body of a directory inode (§9.4, §9.5): VATTR, BMAP, NAME, DIRENTS[, EXTATTRS].

    ``entries`` is the packed first entry segment; ``extattrs`` is given for
    the root only.
    """
    parts = [
        encode_vattr(attrs),
        encode_bmap(fh, segment_ids, tree_roots or _NULL_ROOTS, DIR_OTHER_SEGMENT_BYTES),
        encode_name(name),
        encode_dirents(entries),
    ]
    if extattrs is not None:
        parts.append(encode_extattrs(extattrs))
    return b"".join(parts)


def encode_file_segment(data: bytes, ctime: int, offset: int, owner: bytes) -> bytes:
    """Body of a file data segment (§9.6): DATA, DATABACK."""
    return encode_data(data) + encode_databack(ctime, offset, owner)


def encode_file_segment_parts(parts: Sequence[bytes], ctime: int, offset: int, owner: bytes,
                              prefix: bytes = b"") -> bytes:
    """:func:`encode_file_segment` of the concatenation of ``parts`` (a segment read in pieces), joined once, in the body.

    ``prefix``: bytes put before the body in the same result (an envelope
    header, so that a body stored raw is its payload without a copy:
    :func:`clfsload._native.envelope_py.wrap_prefixed`).
    """
    body = encode_file_segment(b"".join(parts), ctime, offset, owner)
    return bytes(memoryview(prefix)) + body  # the prefix checked last, as in the compiled twin


def encode_dir_segment(entries: bytes, ctime: int, offset: int, owner: bytes) -> bytes:
    """Body of a directory segment (§9.7): DIRENTS, an empty DATA, DATABACK."""
    return encode_dirents(entries) + encode_data(b"") + encode_databack(ctime, offset, owner)


def encode_indirect_block(ids: Sequence[bytes], ctime: int, offset: int, owner: bytes) -> bytes:
    """Body of an indirect block (§9.8): INDIR, DATABACK (offset = tree << 16 | level)."""
    return encode_indir(ids) + encode_databack(ctime, offset, owner)
