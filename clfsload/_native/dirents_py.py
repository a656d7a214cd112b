"""Directory entry packing, splitting and unpacking: the pure-Python twin (§8.2, §12).

An entry is ``u32 name length | name | u16 fh length | fh``. A directory's
entry list (``.``, ``..``, then the children in scan order) is cut into
segments: the first (kept in the inode) holds at most 16,360 bytes, every
later one (a separate blob) at most 262,144. An entry never straddles two
segments.
"""

import struct
from typing import Iterable, List, Sequence, Tuple

from ..clfs.constants import DIR_FIRST_SEGMENT_LIMIT, DIR_OTHER_SEGMENT_BYTES
from ..errors import EncodeError, FormatError

__all__ = ["pack_entries", "split_entries", "unpack_entries"]

_NAME_LEN = struct.Struct("<I")
_FH_LEN = struct.Struct("<H")


def _pack(name: bytes, fh: bytes) -> bytes:
    if len(fh) > 0xFFFF:
        raise EncodeError("filehandle of %d bytes is longer than a u16 length allows" % len(fh))
    return b"".join((_NAME_LEN.pack(len(name)), bytes(name), _FH_LEN.pack(len(fh)), bytes(fh)))


def pack_entries(entries: Iterable[Tuple[bytes, bytes]]) -> bytes:
    """Pack ``(name, fh)`` pairs back to back, with no count and no padding."""
    return b"".join(_pack(name, fh) for name, fh in entries)


def split_entries(
    entries: Sequence[Tuple[bytes, bytes]],
    first_limit: int = DIR_FIRST_SEGMENT_LIMIT,
    other_limit: int = DIR_OTHER_SEGMENT_BYTES,
) -> List[bytes]:
    """Pack ``entries`` into segments; return at least one (possibly empty) segment.

    Before each entry of size e: if the current segment is non-empty and
    ``current + e > limit``, it is closed and a segment with ``other_limit``
    starts. An entry larger than a limit gets a segment of its own.
    """
    segments: List[bytes] = []
    current: List[bytes] = []
    size = 0
    limit = first_limit
    for name, fh in entries:
        packed = _pack(name, fh)
        if current and size + len(packed) > limit:
            segments.append(b"".join(current))
            current = []
            size = 0
            limit = other_limit
        current.append(packed)
        size += len(packed)
    segments.append(b"".join(current))
    return segments


def unpack_entries(data: bytes) -> List[Tuple[bytes, bytes]]:
    """Parse packed entries back into ``(name, fh)`` pairs.

    Raises FormatError naming the offset when an entry is truncated.
    """
    data = bytes(data)
    out: List[Tuple[bytes, bytes]] = []
    pos = 0
    end = len(data)
    while pos < end:
        if end - pos < 4:
            raise FormatError("directory entry at offset %d: truncated name length" % pos)
        (nlen,) = _NAME_LEN.unpack_from(data, pos)
        if end - pos - 4 < nlen + 2:
            raise FormatError("directory entry at offset %d: name of %d bytes overruns the entries" % (pos, nlen))
        name = data[pos + 4 : pos + 4 + nlen]
        (flen,) = _FH_LEN.unpack_from(data, pos + 4 + nlen)
        fh_start = pos + 6 + nlen
        if end - fh_start < flen:
            raise FormatError("directory entry at offset %d: handle of %d bytes overruns the entries" % (pos, flen))
        out.append((name, data[fh_start : fh_start + flen]))
        pos = fh_start + flen
    return out
