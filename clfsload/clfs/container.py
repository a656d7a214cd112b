"""Read a whole CLFS container: classify blob names, walk the tree, read files.

Spec: clfs-format.md §4.6 (parsing names), §11 (block maps), §12
(directories), §13 (hard links) and §17.2 (walking a container).

A container is any :class:`BlobSource`: a list of blob names and a way to
read one. :class:`FolderSource` serves a local folder holding one file per
blob, which is how the golden containers are stored.

:class:`Container` walks from the root. Directories are listed (inode
DIRENTS, then every directory segment in block order) and every reachable
inode is decoded while walking; file data segments are read only when a
file's content is asked for. Every sanity check of §17.2 step 9, plus a
few more, is applied on the way. With ``strict=True`` (the default) the first
violation raises :class:`~clfsload.errors.FormatError`; otherwise violations
are collected in :attr:`Container.problems`. Blobs that the walk never
reaches are reported by :meth:`Container.strays`.

The reading steps live in :mod:`clfsload.clfs.reader`, one module each:
names (:mod:`~clfsload.clfs.reader.names`), sources, the shared core
(violations, the bucket), inodes and block maps, the walk, file content.
:class:`Container` is the last step, the whole-container checks (strays,
``verify``); the reader's public types are re-exported here for callers.
"""

from typing import List, Set

from .._native import hashing
from .constants import FIRST_SEGMENT_BYTES, OTHER_SEGMENT_BYTES, SNAPSHOT_ID, Btype
from .reader.content import ContentReader
from .reader.inodes_model import BlockRef, IndirectRef, Inode
from .reader.names import BlobName, UnfinishedTransferError, parse_blob_name
from .reader.sources import BlobSource, FolderSource
from .reader.walk_model import SkippedEntry, WalkEntry, bad_name

__all__ = [
    "BlobSource",
    "FolderSource",
    "BlobName",
    "parse_blob_name",
    "BlockRef",
    "IndirectRef",
    "Inode",
    "WalkEntry",
    "SkippedEntry",
    "bad_name",
    "UnfinishedTransferError",
    "Container",
    "SEGMENT_OVERHEAD",
    "LZ4_BEST_RATIO",
]

#: a data segment's blob beyond its data: the 4-byte envelope, the DATA and
#: DATABACK handle headers (20 bytes each), padding and the owner's handle
SEGMENT_OVERHEAD = 256
#: LZ4 encodes at best about 255 bytes per output byte: no compressed segment is smaller than its data over this
LZ4_BEST_RATIO = 300


class Container(ContentReader):
    """A CLFS container read through a :class:`BlobSource`.

    Names are classified on construction (§17.2 step 1); the tree is walked
    on first use. ``strict`` makes every sanity violation raise FormatError;
    otherwise they accumulate in :attr:`problems`. ``allow_unfinished`` walks
    from the ``tmp`` root when no final root exists, instead of raising
    :class:`UnfinishedTransferError`.
    """

    def strays(self) -> List[str]:
        """CLFS blobs (V1, V2, ``tmp``) the walk does not reach, sorted.

        Data segments count as reached once a block map names them, so this
        needs no data reads. Log blobs are not CLFS objects and never strays.
        """
        self.walk()
        _ = self.bucket
        names = [n.blob for n in self.clfs_names] + self.tmp_names
        return sorted(n for n in names if n not in self._reached)

    def _check_segment_sizes(self) -> None:
        """Each data segment's listed blob size can hold the bytes the block map gives it (no data read).

        Block ``i`` of a file of ``size`` bytes holds ``min(8 MiB, size - offset)``
        (§11.2). Its blob is the 4-byte envelope plus the segment's handles: at
        most :data:`SEGMENT_OVERHEAD` bytes more than the data when stored raw,
        and never less than the data over :data:`LZ4_BEST_RATIO` when
        compressed. A blob outside those bounds holds another segment's data
        (a swap, a truncation) even before it is read.
        """
        size_of = getattr(self.source, "size", None)
        if size_of is None:
            return
        seen: Set[bytes] = set()
        for entry in self.walk():
            inode = entry.inode
            if inode.btype != Btype.REG or entry.fh in seen:
                continue
            seen.add(entry.fh)
            size = inode.vattr.size
            for ref in inode.segments:
                offset = FIRST_SEGMENT_BYTES + (ref.index - 1) * OTHER_SEGMENT_BYTES
                expected = max(0, min(OTHER_SEGMENT_BYTES, size - offset))
                listed = size_of(ref.blob)
                if listed is None:
                    continue
                if not expected // LZ4_BEST_RATIO <= listed <= expected + SEGMENT_OVERHEAD:
                    self._violation(ref.blob, "segment blob of %d bytes cannot hold the %d bytes block %d of %s "
                                    "holds (file size %d)" % (listed, expected, ref.index,
                                                              entry.path.decode("utf-8", "replace"), size))

    def verify(self, read_data: bool = True) -> List[str]:
        """Walk everything (and stream every file when ``read_data``); return the problems.

        In strict mode the first violation raises instead. Strays are
        reported as problems too.
        """
        if read_data:
            read: Set[bytes] = set()
            for entry in self.walk():
                if entry.inode.btype == Btype.REG and entry.fh not in read:
                    read.add(entry.fh)
                    for _ in self.iter_content(entry.inode):
                        pass
        else:
            self.walk()
            self._check_segment_sizes()
        for blob in self.strays():
            self._violation(blob, "stray blob: not reachable from the root")
        for name in self.clfs_names:
            self._expect(name.snapshot == SNAPSHOT_ID, name.blob, "snapshot id %08X" % name.snapshot)
            wanted = hashing.hash64(name.obj_id) >> (32 if name.name_version == 1 else 0)
            self._expect(name.id_hash == wanted, name.blob, "the name's hash does not match its id")
        return list(self.problems)
