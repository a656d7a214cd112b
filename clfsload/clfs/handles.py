"""Filehandle generation (§2.2).

A generated filehandle is 24 bytes::

    0  u32  fh word: ((containerid & 0x07FFFFFF) << 5) | 0x11
    4  u8   dmid_src: the parent directory's dmid_tgt (byte 5 of its fh)
    5  u8   dmid_tgt: a directory's own manager id; a non-directory repeats dmid_src
    6  u8   Ftype (not Btype)
    7  u8   0
    8  u64  seq: unique in the run
    16 u64  random tail in [1, 2^64-1]

Sequence numbers come from :class:`SeqRange` blocks handed out by the state
store, so workers never coordinate per object. A directory's dmid_tgt is
derived from its own seq (``seq % 48``) for the same reason; the reference's
run-wide round-robin counter needs a shared counter, and the value is not
part of any comparison (§16 item 5).
"""

import random
import struct
from typing import Optional

from .constants import DIRMGR_COUNT, FH_LEN, Ftype
from ..errors import EncodeError
from .._native import hashing

_FH = struct.Struct("<IBBBBQQ")
_TAIL_MAX = (1 << 64) - 1


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


class SeqRange:
    """A contiguous block ``[start, stop)`` of sequence numbers owned by one worker."""

    __slots__ = ("next", "stop")

    def __init__(self, start: int, stop: int):
        if not 0 < start <= stop:
            raise ValueError("bad sequence range [%d, %d)" % (start, stop))
        self.next = start
        self.stop = stop

    def __len__(self) -> int:
        return self.stop - self.next

    def take(self) -> int:
        """Return the next sequence number; raises LookupError when the range is used up."""
        if self.next >= self.stop:
            raise LookupError("sequence range exhausted")
        seq = self.next
        self.next += 1
        return seq


class FhFactory:
    """Makes filehandles for one unit of work from its container id and a seq range."""

    def __init__(self, containerid: int, seqs: SeqRange, rng: Optional[random.Random] = None):
        if not 0 < containerid <= 0xFFFFFFFF:
            raise EncodeError("containerid %r is not in [1, 2^32-1]" % (containerid,))
        self.containerid = containerid
        self.seqs = seqs
        self._rng = rng or random.SystemRandom()

    def new(self, parent_fh: bytes, ftype: int) -> bytes:
        """A fresh fh for a child of ``parent_fh`` of type ``ftype``.

        The random tail is redrawn while the fh's fnv1_variant is 0, which
        CLFS rejects (§2.2).
        """
        seq = self.seqs.take()
        dmid_src = dmid_of(parent_fh)
        dmid_tgt = seq % DIRMGR_COUNT if ftype == Ftype.DIR else dmid_src
        while True:
            fh = make_fh(self.containerid, dmid_src, dmid_tgt, ftype, seq, self._rng.randint(1, _TAIL_MAX))
            if hashing.fnv1_variant(fh) != 0:
                return fh
