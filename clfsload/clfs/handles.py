"""The filehandle layout (§2.2): pack a generated filehandle and read its fields.

A generated filehandle is 24 bytes::

    0  u32  fh word: ((containerid & 0x07FFFFFF) << 5) | 0x11
    4  u8   dmid_src: the parent directory's dmid_tgt (byte 5 of its fh)
    5  u8   dmid_tgt: a directory's own manager id; a non-directory repeats dmid_src
    6  u8   Ftype (not Btype)
    7  u8   0
    8  u64  seq: unique in the run
    16 u64  random tail in [1, 2^64-1]

This module only packs and reads the fields. Which seq, tail and dmids a
loaded object gets is decided in :mod:`clfsload.work.ids` (keyed hashes of
where the object sits in the work, and the run-wide directory counter the
driver reserves for a directory's subdirectories).
"""

import struct
from typing import Optional

from .constants import FH_LEN, Ftype

_FH = struct.Struct("<IBBBBQQ")


def fh_word(containerid: int) -> int:
    """The first u32 of every generated fh: version 1, local, the low 27 bits of containerid."""
    return ((containerid & 0x07FFFFFF) << 5) | 0x11


def dmid_of(fh: bytes) -> int:
    """The directory-manager id a child of ``fh`` inherits: byte 5 of the fh.

    For the 16-byte root id this is 0.
    """
    return fh[5]


def make_fh(containerid: int, dmid_src: int, dmid_tgt: int, ftype: int, seq: int, tail: int) -> bytes:
    """Pack a 24-byte filehandle from its fields (no hash check)."""
    return _FH.pack(fh_word(containerid), dmid_src, dmid_tgt, ftype, 0, seq, tail)


def ftype_of_fh(fh: bytes) -> Optional[Ftype]:
    """The Ftype stored in a generated fh, or None for the 16-byte well-known ids."""
    if len(fh) != FH_LEN:
        return None
    return Ftype(fh[6])
