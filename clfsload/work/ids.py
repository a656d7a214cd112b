"""Deterministic identifiers for one run: filehandles, segment and indirect-block ids.

The reference draws filehandle tails and segment ids at random, so an object
uploaded twice (a crash, a retried directory) leaves the first attempt's
blobs behind for ever (behaviour spec §4.5). Here every id is a keyed hash
of where the object sits in the work, under a 16-byte secret drawn once per
transfer and kept in the state store:

* a child's sequence number is ``unit << 28 | (k + 1)``, where ``unit`` is the
  id of the directory unit that found it and ``k`` its rank in the sorted
  names of that directory; so a re-run of the unit names the same objects;
* its random tail is BLAKE2b(secret, seq), redrawn while fnv1_variant(fh) == 0;
* a hard-linked inode (``--preserve_hardlinks 1``) gets a seq from
  BLAKE2b(secret, dev, ino, ftype) with bit 62 set, so every directory that
  meets one of its links keys it alike without asking anybody;
* every seq lies in ``[1001, 2^63)``, positive as a signed 64-bit integer as
  the reference's are: directory units stay below ``2^34``, so their
  children's seqs stay below bit 62, the linked inodes' bit;
* the directory-manager ids (FMT §2.2) follow the reference's rules: a
  non-directory's ``dmid_src`` and ``dmid_tgt`` are its parent's
  ``dmid_tgt``; a directory's ``dmid_tgt`` is ``k mod 48`` for the value
  ``k`` of the run-wide directory counter the driver reserved for it (see
  :class:`clfsload.work.transfer.DirTask`); a hard-linked inode takes the
  ``dmid_tgt`` of the directory its first backpointer names, which is known
  only once every directory has been scanned, so its handle is settled by
  the driver before RECONCILE (:meth:`IdMint.settled_linked_fh`);
* segment and indirect-block ids are BLAKE2b(secret, owner fh, kind, index),
  shaped as UUID4 (version and variant bits set) like the reference's.

To an observer the ids are as random as the reference's; to a re-run they are
the same, so it overwrites its blobs instead of orphaning them.
"""

import struct

try:  # hashlib's own blake2b; importing hashlib loads OpenSSL too (2-3 ms at every start), which no id needs
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - an interpreter without the builtin module
    from hashlib import blake2b
from ..clfs.constants import DIRMGR_COUNT, MIN_SEQ, Ftype
from ..clfs.handles import dmid_of, make_fh
from .._native import hashing

UNIT_SHIFT = 28  # children per directory unit: 2^28 - 1
#: directory units stay below 2^34, so ``unit << 28 | rank`` stays below LINKED_SEQ_BIT
MAX_UNIT = (1 << (62 - UNIT_SHIFT)) - 1
#: marks the seq of a hard-linked inode; bit 63 stays clear (seqs are positive as signed integers)
LINKED_SEQ_BIT = 1 << 62
_U64 = struct.Struct("<Q")


class IdMint:
    """Makes every id of one run from its containerid and secret."""

    def __init__(self, containerid: int, secret: bytes):
        if len(secret) < 16:
            raise ValueError("the id secret must be at least 16 bytes")
        self.containerid = containerid
        self._key = bytes(secret[:64])

    def _hash(self, data: bytes, size: int) -> bytes:
        return blake2b(data, key=self._key, digest_size=size).digest()

    def child_seq(self, unit: int, rank: int) -> int:
        """The sequence number of the ``rank``-th (0-based) child of directory unit ``unit``."""
        if not 0 < unit <= MAX_UNIT:
            raise ValueError("directory unit %d is out of range" % unit)
        if not 0 <= rank < (1 << UNIT_SHIFT) - 1:
            raise ValueError("a directory holds at most %d entries" % ((1 << UNIT_SHIFT) - 1))
        return (unit << UNIT_SHIFT) | (rank + 1)

    def linked_seq(self, dev: int, ino: int, ftype: int) -> int:
        """The sequence number of a hard-linked inode, the same from every one of its links."""
        digest = self._hash(b"L" + _U64.pack(dev) + _U64.pack(ino) + bytes((ftype,)), 8)
        # MIN_SEQ: a digest this small is all but impossible, but the range is a promise
        return LINKED_SEQ_BIT | max(_U64.unpack(digest)[0] & (LINKED_SEQ_BIT - 1), MIN_SEQ)

    def fh(self, parent_fh: bytes, ftype: int, seq: int) -> bytes:
        """The 24-byte filehandle of a non-directory with ``seq`` found under ``parent_fh`` (FMT §2.2)."""
        if ftype == Ftype.DIR:
            raise ValueError("a directory's filehandle needs its counter value: use dir_fh")
        dmid = dmid_of(parent_fh)
        return self._fh(dmid, dmid, ftype, seq)

    def dir_fh(self, parent_fh: bytes, seq: int, counter: int) -> bytes:
        """The filehandle of a directory with ``seq`` under ``parent_fh``, the ``counter``-th directory (k >= 1).

        Its ``dmid_tgt`` is ``counter mod 48``: the reference's run-wide
        round-robin over the directory managers (FMT §2.2).
        """
        if counter < 1:
            raise ValueError("directory counter values start at 1, not %d" % counter)
        return self._fh(dmid_of(parent_fh), counter % DIRMGR_COUNT, Ftype.DIR, seq)

    def linked_fh(self, dev: int, ino: int, ftype: int) -> bytes:
        """The key of a hard-linked non-directory: the same from every one of its links.

        It is what the worker that meets a link writes in the state; the
        handle stored on the target is :meth:`settled_linked_fh` of it, once
        the directory its first backpointer names is known.
        """
        return self._fh(0, 0, ftype, self.linked_seq(dev, ino, ftype))

    def settled_linked_fh(self, key: bytes, first_parent_fh: bytes) -> bytes:
        """The handle of the hard-linked object keyed ``key`` whose first backpointer is ``first_parent_fh``.

        Same seq as the key; ``dmid_src`` and ``dmid_tgt`` are the first
        parent's ``dmid_tgt`` (0 for the root), as FMT §2.2 requires.
        """
        dmid = dmid_of(first_parent_fh)
        return self._fh(dmid, dmid, key[6], seq_of(key))

    def _fh(self, dmid_src: int, dmid_tgt: int, ftype: int, seq: int) -> bytes:
        attempt = 0
        while True:
            digest = self._hash(b"F" + _U64.pack(seq) + _U64.pack(attempt), 8)
            tail = _U64.unpack(digest)[0] or 1  # the tail is never 0
            fh = make_fh(self.containerid, dmid_src, dmid_tgt, ftype, seq, tail)
            if hashing.fnv1_variant(fh) != 0:  # CLFS rejects a zero hash (FMT §2.2)
                return fh
            attempt += 1

    def block_id(self, owner_fh: bytes, kind: bytes, index: int) -> bytes:
        """A UUID4-shaped 16-byte id for block ``index`` of ``kind`` (b"S" segment, b"I" indirect)."""
        raw = bytearray(self._hash(b"B" + kind + bytes(owner_fh) + _U64.pack(index), 16))
        raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        return bytes(raw)

    def block_ids(self, owner_fh: bytes) -> "BlockIds":
        """Id makers for the segments and indirect blocks of one object."""
        return BlockIds(self, owner_fh)


def seq_of(fh: bytes) -> int:
    """The seq field (bytes 8-15, little-endian) of a generated 24-byte filehandle."""
    return _U64.unpack_from(fh, 8)[0]


def is_linked(fh: bytes) -> bool:
    """True for the handle (or key) of a hard-linked object: a 24-byte fh whose seq has LINKED_SEQ_BIT."""
    return len(fh) == 24 and seq_of(fh) & LINKED_SEQ_BIT != 0


class BlockIds:
    """Segment ids by block index, indirect-block ids in creation order, for one owner."""

    def __init__(self, mint: IdMint, owner_fh: bytes):
        self._mint = mint
        self._owner = owner_fh
        self._indirect = 0

    def segment(self, index: int) -> bytes:
        """The id of data segment ``index`` (1-based block index)."""
        return self._mint.block_id(self._owner, b"S", index)

    def next_indirect(self) -> bytes:
        """The id of the next indirect block (the builder closes them in a fixed order)."""
        self._indirect += 1
        return self._mint.block_id(self._owner, b"I", self._indirect)
