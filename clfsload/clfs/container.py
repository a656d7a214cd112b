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
"""

import collections
import dataclasses
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Protocol, Set, Tuple

from .._native import hashing
from ..errors import FormatError
from .constants import (
    BUCKET_ID,
    CLFS_NAME_MAX,
    DIR_OTHER_SEGMENT_BYTES,
    DIRECT_BLOCKS,
    FIRST_SEGMENT_BYTES,
    NULL_FH,
    NULL_ID,
    OBJ_VERSION_INITIAL,
    OTHER_SEGMENT_BYTES,
    ROOT_ID,
    SNAPSHOT_ID,
    SYMLINK_TARGET_MAX,
    TMP_PREFIX,
    Btype,
    Obtype,
)
from .decode import DecodedObject, decode_payload
from .vattr import VAttr

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
]


class BlobSource(Protocol):
    """Where a container's blobs come from."""

    def names(self) -> Iterable[str]:
        """Every blob name in the container."""

    def read(self, name: str) -> bytes:
        """The whole payload of blob ``name``."""

    # A source may also have ``size(name) -> Optional[int]``, the blob's size as
    # listed: plain verify then checks each data segment's size against the
    # bytes its block map gives it, without reading it.


class FolderSource:
    """A local folder with one file per blob, the file name being the blob name."""

    def __init__(self, path: str) -> None:
        self.path = os.fspath(path)

    def names(self) -> List[str]:
        """The regular files of the folder, sorted."""
        return sorted(e.name for e in os.scandir(self.path) if e.is_file(follow_symlinks=False))

    def read(self, name: str) -> bytes:
        """The content of the file named ``name``."""
        with open(os.path.join(self.path, name), "rb") as f:
            return f.read()

    def size(self, name: str) -> Optional[int]:
        """The size of the file named ``name`` (None if it is gone)."""
        try:
            return os.lstat(os.path.join(self.path, name)).st_size
        except OSError:
            return None

    def __repr__(self) -> str:
        return "FolderSource(%r)" % self.path


class UnfinishedTransferError(FormatError):
    """The container holds only the ``tmp`` root: the transfer never finalized (§4.5)."""


# §17.2 step 1. V2: hash64(id) _ HEX(id) . btype . hash64(owner) . version . snapshot . 0002
_V2_NAME = re.compile(
    r"^([0-9A-F]{16})_([0-9A-F]{32}|[0-9A-F]{48})\.(\d{4})\.([0-9A-F]{16})\.(\d{11})\.([0-9A-F]{8})\.0002$"
)
# V1 (§4.2): fnv1_variant(id) _ HEX(id) . version . snapshot . 0001
_V1_NAME = re.compile(r"^([0-9A-F]{8})_([0-9A-F]{32})\.(\d{11})\.([0-9A-F]{8})\.0001$")
_INODE_BTYPES = frozenset((Btype.REG, Btype.DIR, Btype.BLK, Btype.CHR, Btype.LNK, Btype.SOCK, Btype.FIFO))
# S_IFMT bits of VATTR.mode per inode Btype
_MODE_FORMAT = {
    Btype.REG: stat.S_IFREG,
    Btype.DIR: stat.S_IFDIR,
    Btype.BLK: stat.S_IFBLK,
    Btype.CHR: stat.S_IFCHR,
    Btype.LNK: stat.S_IFLNK,
    Btype.SOCK: stat.S_IFSOCK,
    Btype.FIFO: stat.S_IFIFO,
}
# Handle sequence per object kind, in body order (§9); reconcile keeps it (§13).
_FILE_HANDLES = [Obtype.VATTR, Obtype.BMAP, Obtype.BACK, Obtype.NAME, Obtype.DATA]
_SPECIAL_HANDLES = _FILE_HANDLES[:4]
_DIR_HANDLES = [Obtype.VATTR, Obtype.BMAP, Obtype.NAME, Obtype.DIRENTS]
_ROOT_HANDLES = _DIR_HANDLES + [Obtype.EXTATTRS]
_DIR_SEGMENT_HANDLES = [Obtype.DIRENTS, Obtype.DATA, Obtype.DATABACK]
_DATA_SEGMENT_HANDLES = [Obtype.DATA, Obtype.DATABACK]
#: a data segment's blob beyond its data: the 4-byte envelope, the DATA and
#: DATABACK handle headers (20 bytes each), padding and the owner's handle
SEGMENT_OVERHEAD = 256
#: LZ4 encodes at best about 255 bytes per output byte: no compressed segment is smaller than its data over this
LZ4_BEST_RATIO = 300
_INDIRECT_HANDLES = [Obtype.INDIR, Obtype.DATABACK]
# fh byte 6 holds the Ftype (§2.5); Ftype -> Btype
_FTYPE_BTYPE = {1: Btype.DIR, 2: Btype.REG, 3: Btype.LNK, 4: Btype.BLK, 5: Btype.CHR, 6: Btype.SOCK, 7: Btype.FIFO}


@dataclass(frozen=True)
class BlobName:
    """A parsed CLFS blob name (§4). ``btype`` and ``owner_hash`` are None for V1 names."""

    blob: str
    name_version: int  # 1 (V1, bucket) or 2 (V2, everything else)
    obj_id: bytes
    version: int
    snapshot: int
    id_hash: int  # the leading hash token: hash64 (V2) or fnv1_variant (V1)
    btype: Optional[int] = None
    owner_hash: Optional[int] = None


def parse_blob_name(blob: str) -> Optional[BlobName]:
    """Parse a V1 or V2 CLFS name; None for anything else (``tmp`` names, logs)."""
    m = _V2_NAME.match(blob)
    if m:
        return BlobName(
            blob=blob,
            name_version=2,
            obj_id=bytes.fromhex(m.group(2)),
            version=int(m.group(5)),
            snapshot=int(m.group(6), 16),
            id_hash=int(m.group(1), 16),
            btype=int(m.group(3)),
            owner_hash=int(m.group(4), 16),
        )
    m = _V1_NAME.match(blob)
    if m:
        return BlobName(
            blob=blob,
            name_version=1,
            obj_id=bytes.fromhex(m.group(2)),
            version=int(m.group(3)),
            snapshot=int(m.group(4), 16),
            id_hash=int(m.group(1), 16),
        )
    return None


@dataclass(frozen=True)
class BlockRef:
    """A data or directory segment: block ``index`` (≥ 1) of its owner's block map."""

    index: int
    obj_id: bytes
    blob: str


@dataclass(frozen=True)
class IndirectRef:
    """An indirect block: tree ``tree``, ``level`` (0 = root), ``ordinal``-th at that level."""

    tree: int
    level: int
    ordinal: int
    obj_id: bytes
    blob: str
    obj: DecodedObject


@dataclass
class Inode:
    """One decoded inode object with its resolved block map."""

    fh: bytes
    name: BlobName
    obj: DecodedObject
    segments: List[BlockRef] = field(default_factory=list)  # block 1, 2, ... in order
    indirects: List[IndirectRef] = field(default_factory=list)  # depth-first order

    @property
    def blob(self) -> str:
        """The inode's blob name."""
        return self.name.blob

    @property
    def vattr(self) -> VAttr:
        """The inode's attributes (the decoder guarantees a VATTR on walked inodes)."""
        assert self.obj.vattr is not None
        return self.obj.vattr.vattr

    @property
    def btype(self) -> int:
        """The object type from VATTR."""
        return self.vattr.btype

    @property
    def is_dir(self) -> bool:
        """True for directories."""
        return self.btype == Btype.DIR


@dataclass(frozen=True)
class WalkEntry:
    """One path reached by the walk. Hard links give several entries sharing an inode."""

    path: bytes  # relative to the root, "/"-separated; b"" for the root
    parent_fh: bytes  # the directory listing it (the root lists itself)
    inode: Inode

    @property
    def fh(self) -> bytes:
        """The object's filehandle."""
        return self.inode.fh


@dataclass(frozen=True)
class SkippedEntry:
    """A directory entry the walk did not turn into a path, and why (one line, naming the blob)."""

    path: bytes  # the path it would have had (its name may be hostile: show it with display_path)
    reason: str
    refused: bool = True  # False: a good name whose inode is missing or does not decode


def bad_name(name: bytes) -> Optional[str]:
    """Why ``name`` cannot be a path component (empty, ``.``, ``..``, ``/``, NUL, too long), or None."""
    if name in (b"", b".", b".."):
        return "the name %r is not allowed" % name.decode("utf-8", "backslashreplace")
    if b"/" in name:
        return "the name holds a '/'"
    if b"\0" in name:
        return "the name holds a NUL byte"
    if len(name) > CLFS_NAME_MAX:
        return "the name is %d bytes, more than %d" % (len(name), CLFS_NAME_MAX)
    return None


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _names(handle_types: List[int]) -> str:
    """Handle types as readable names, e.g. ``VATTR,BMAP,NAME``."""
    return ",".join(t.name if isinstance(t, Obtype) else str(t) for t in handle_types)


class Container:
    """A CLFS container read through a :class:`BlobSource`.

    Names are classified on construction (§17.2 step 1); the tree is walked
    on first use. ``strict`` makes every sanity violation raise FormatError;
    otherwise they accumulate in :attr:`problems`. ``allow_unfinished`` walks
    from the ``tmp`` root when no final root exists, instead of raising
    :class:`UnfinishedTransferError`.
    """

    def __init__(self, source: BlobSource, strict: bool = True, allow_unfinished: bool = False) -> None:
        self.source = source
        self.strict = strict
        self.allow_unfinished = allow_unfinished
        #: sanity violations found so far (only when not strict)
        self.problems: List[str] = []
        self._problem_set: Set[str] = set()
        #: every V1 and V2 name, every version
        self.clfs_names: List[BlobName] = []
        #: ``tmp``-prefixed names (§4.5)
        self.tmp_names: List[str] = []
        #: anything else: the log texts (§9.10)
        self.other_names: List[str] = []
        self._latest: Dict[Tuple[int, bytes], BlobName] = {}  # (name version, id) -> highest version
        for blob in source.names():
            self._classify(blob)
        self._reached: Set[str] = set()
        #: entries the walk refused or could not reach (bad or duplicate names, dangling, undecodable)
        self.skipped: List[SkippedEntry] = []
        self._children: Dict[bytes, List[bytes]] = {}  # directory path -> names walked, listing order
        self._entries: Optional[List[WalkEntry]] = None
        self._by_path: Dict[bytes, WalkEntry] = {}
        self._links: Dict[bytes, List[bytes]] = {}
        self._inodes: Dict[bytes, Inode] = {}
        self._listings: Dict[bytes, List[Tuple[bytes, bytes]]] = {}
        self._dir_segments: Dict[bytes, List[Tuple[BlockRef, DecodedObject]]] = {}
        self._bucket: Optional[DecodedObject] = None

    # --- names -------------------------------------------------------------

    def _classify(self, blob: str) -> None:
        if blob.startswith(TMP_PREFIX):
            self.tmp_names.append(blob)
            return
        parsed = parse_blob_name(blob)
        if parsed is None:
            self.other_names.append(blob)
            return
        self.clfs_names.append(parsed)
        key = (parsed.name_version, parsed.obj_id)
        best = self._latest.get(key)
        if best is None or parsed.version > best.version:
            self._latest[key] = parsed

    def latest(self, obj_id: bytes) -> Optional[BlobName]:
        """The highest-version V2 name of ``obj_id`` (§4.6), or None."""
        return self._latest.get((2, bytes(obj_id)))

    @property
    def bucket_name(self) -> Optional[str]:
        """The bucket's V1 blob name, or None if it is missing."""
        found = self._latest.get((1, BUCKET_ID))
        return found.blob if found else None

    def _tmp_root_name(self) -> Optional[BlobName]:
        """The highest-version ``tmp`` + root V2 name, parsed (its ``blob`` keeps the prefix)."""
        best: Optional[BlobName] = None
        for blob in self.tmp_names:
            parsed = parse_blob_name(blob[len(TMP_PREFIX) :])
            if parsed is None or parsed.name_version != 2 or parsed.obj_id != ROOT_ID:
                continue
            if best is None or parsed.version > best.version:
                best = dataclasses.replace(parsed, blob=blob)
        return best

    @property
    def tmp_root(self) -> Optional[str]:
        """The ``tmp`` root name (§4.5), if one is present."""
        found = self._tmp_root_name()
        return found.blob if found else None

    @property
    def finished(self) -> bool:
        """True when the final root name exists, the mark of a finalized transfer (§4.5)."""
        return self.latest(ROOT_ID) is not None

    def root_name(self) -> BlobName:
        """The root's blob name. Raises UnfinishedTransferError if only ``tmp`` exists."""
        final = self.latest(ROOT_ID)
        if final is not None:
            return final
        tmp = self._tmp_root_name()
        if tmp is None:
            raise FormatError("container has no root inode (%s*)" % hashing.name_prefix(ROOT_ID))
        if not self.allow_unfinished:
            raise UnfinishedTransferError(
                "%s: only the tmp root exists: the transfer did not finish (no finalize phase)" % tmp.blob
            )
        return tmp

    # --- problems ----------------------------------------------------------

    def _violation(self, blob: str, message: str) -> None:
        text = "%s: %s" % (blob, message)
        if self.strict:
            raise FormatError(text)
        if text not in self._problem_set:  # lazy checks may run again (content read twice)
            self._problem_set.add(text)
            self.problems.append(text)

    def _expect(self, ok: bool, blob: str, message: str) -> bool:
        if not ok:
            self._violation(blob, message)
        return ok

    def read_object(self, blob: str) -> DecodedObject:
        """Read and decode one blob (no sanity checks beyond the decoder's)."""
        self._reached.add(blob)
        return decode_payload(self.source.read(blob), blob)

    # --- bucket ------------------------------------------------------------

    @property
    def bucket(self) -> DecodedObject:
        """The decoded bucket object (§9.9); it must hold exactly one EXTATTRS handle."""
        if self._bucket is None:
            name = self.bucket_name
            if name is None:
                raise FormatError("container has no bucket object (%s)" % hashing.bucket_blob_name())
            obj = self.read_object(name)
            if obj.handle_types != [Obtype.EXTATTRS]:
                raise FormatError("%s: bucket handles are %s, expected one EXTATTRS" % (name, obj.handle_types))
            self._bucket = obj
        return self._bucket

    @property
    def bucket_extattrs(self) -> List[Tuple[str, str]]:
        """The bucket's ext-attr pairs in stored order."""
        assert self.bucket.extattrs is not None
        return list(self.bucket.extattrs)

    # --- inodes and block maps ---------------------------------------------

    def _load_inode(self, fh: bytes, name: BlobName) -> Inode:
        obj = self.read_object(name.blob)
        blob = name.blob
        if obj.vattr is None or obj.bmap is None:
            raise FormatError("%s: inode without %s" % (blob, "VATTR" if obj.vattr is None else "BMAP"))
        inode = Inode(fh, name, obj)
        attrs = inode.vattr
        btype = attrs.btype
        self._expect(btype in _INODE_BTYPES, blob, "VATTR btype %d is not an inode type" % btype)
        self._expect(btype == name.btype, blob, "VATTR btype %d differs from the name's %s" % (btype, name.btype))
        fmt = _MODE_FORMAT.get(btype)
        self._expect(fmt is None or stat.S_IFMT(attrs.mode) == fmt, blob,
                     "mode 0o%o does not match btype %d" % (attrs.mode, btype))  # fmt: skip
        if fh != ROOT_ID:
            ftype = fh[6] if len(fh) > 6 else None
            self._expect(_FTYPE_BTYPE.get(ftype) == btype, blob, "fh Ftype %s does not match btype %d" % (ftype, btype))
        bmap = obj.bmap
        self._expect(bmap.direct[0] == fh, blob, "BMAP.direct[0] is %s, not the own fh" % bmap.direct[0].hex())
        self._expect(bmap.first_segment_bytes == FIRST_SEGMENT_BYTES, blob,
                     "firstSegmentBytes is %d" % bmap.first_segment_bytes)  # fmt: skip
        other = DIR_OTHER_SEGMENT_BYTES if btype == Btype.DIR else OTHER_SEGMENT_BYTES
        self._expect(bmap.other_segment_bytes == other, blob,
                     "otherSegmentBytes is %d, expected %d" % (bmap.other_segment_bytes, other))  # fmt: skip
        self._check_handles(inode)
        self._resolve_blocks(inode)
        if btype == Btype.REG:
            expected = _ceil_div(max(0, attrs.size - FIRST_SEGMENT_BYTES), OTHER_SEGMENT_BYTES)
            found = len(inode.segments)
            self._expect(found == expected, blob,
                         "%d data segments for size %d, expected %d" % (found, attrs.size, expected))  # fmt: skip
            data = obj.data or b""
            self._expect(len(data) == min(attrs.size, FIRST_SEGMENT_BYTES), blob,
                         "inode DATA holds %d bytes for size %d" % (len(data), attrs.size))  # fmt: skip
        elif btype == Btype.LNK:
            target = obj.data or b""
            self._expect(b"\0" not in target, blob, "symlink target holds a NUL byte")
            self._expect(len(target) <= SYMLINK_TARGET_MAX, blob,
                         "symlink target of %d bytes is longer than %d" % (len(target), SYMLINK_TARGET_MAX))  # fmt: skip
        return inode

    def _check_handles(self, inode: Inode) -> None:
        """Handle sequence per object kind (§9) and the owner hash in the name (§4.4)."""
        obj, blob = inode.obj, inode.blob
        if inode.fh == ROOT_ID:
            expected = _ROOT_HANDLES
        elif inode.is_dir:
            expected = _DIR_HANDLES
        else:
            expected = _FILE_HANDLES if inode.btype in (Btype.REG, Btype.LNK) else _SPECIAL_HANDLES
        self._expect(obj.handle_types == expected, blob, "handles %s, expected %s" % (
            _names(obj.handle_types), _names(expected)))  # fmt: skip
        if inode.is_dir:
            if not self._expect(obj.dirents is not None and len(obj.dirents) >= 2, blob,
                                "directory inode without the . and .. entries"):  # fmt: skip
                return
            assert obj.dirents is not None
            (dot, dot_fh), (dotdot, dotdot_fh) = obj.dirents[:2]
            self._expect(dot == b"." and dotdot == b"..", blob, "DIRENTS do not start with . and ..")
            self._expect(dot_fh == inode.fh, blob, "the . entry is not the own fh")
            self._expect(hashing.hash64(dotdot_fh) == inode.name.owner_hash, blob,
                         "the .. entry %s does not match the owner hash in the name" % dotdot_fh.hex())  # fmt: skip
            if inode.fh == ROOT_ID:
                self._expect(dotdot_fh == ROOT_ID, blob, "the root's .. is not the root")
            return
        if not self._expect(obj.back is not None and len(obj.back) > 0, blob, "inode without backpointers"):
            return
        assert obj.back is not None
        self._expect(hashing.hash64(obj.back[0]) == inode.name.owner_hash, blob,
                     "first backpointer %s does not match the owner hash in the name" % obj.back[0].hex())  # fmt: skip
        nonnull = sum(1 for b in obj.back if b != NULL_FH)
        self._expect(inode.vattr.nlink == nonnull, blob,
                     "nlink %d but %d backpointers" % (inode.vattr.nlink, nonnull))  # fmt: skip

    def _block_name(self, obj_id: bytes, btype: int, inode: Inode, what: str) -> Optional[BlobName]:
        """Find the blob of a segment or indirect block owned by ``inode``."""
        name = self.latest(obj_id)
        if not self._expect(name is not None, inode.blob, "%s %s has no blob" % (what, obj_id.hex())):
            return None
        assert name is not None
        self._expect(name.btype == btype, name.blob, "%s named with btype %s, expected %d" % (what, name.btype, btype))
        self._expect(name.owner_hash == hashing.hash64(inode.fh), name.blob,
                     "%s owner hash does not match its owner %s" % (what, inode.blob))  # fmt: skip
        self._reached.add(name.blob)
        return name

    def _check_databack(self, obj: DecodedObject, inode: Inode, offset: int, what: str) -> None:
        blob = obj.blob
        if not self._expect(obj.databack is not None, blob, "%s without DATABACK" % what):
            return
        assert obj.databack is not None
        back = obj.databack
        self._expect(back.owner == inode.fh, blob, "DATABACK owner %s is not %s" % (back.owner.hex(), inode.blob))
        self._expect(back.offset == offset, blob, "DATABACK offset %d, expected %d" % (back.offset, offset))
        self._expect(back.ctime == inode.vattr.ctime_sec, blob,
                     "DATABACK ctime %d differs from the owner's %d" % (back.ctime, inode.vattr.ctime_sec))  # fmt: skip

    def _segment_limit(self, inode: Inode) -> int:
        """The most segments a block map may list for the inode's size.

        A file needs ceil((size - 16 KiB) / 8 MiB); a directory's size counts
        at least a 4-byte word per entry segment (§12.4). The walk of a block
        map stops there, so a cycle or a forged tree cannot make it run on.
        """
        attrs = inode.vattr
        if attrs.btype == Btype.DIR:
            return max(0, attrs.size // 4 - 1)
        if attrs.btype == Btype.REG:
            return _ceil_div(max(0, attrs.size - FIRST_SEGMENT_BYTES), OTHER_SEGMENT_BYTES)
        return 0

    def _resolve_blocks(self, inode: Inode) -> None:
        """Fill ``inode.segments`` and ``inode.indirects`` from its block map (§11.2, §11.3).

        Bounded: each indirect block is read once per inode (a block reached
        again is a cycle or a shared block, reported and not followed), and
        the walk stops once more segments are listed than the size allows.
        """
        bmap = inode.obj.bmap
        assert bmap is not None
        limit = self._segment_limit(inode)
        overrun = "the block map lists more than %d segments, the most size %d allows" % (limit, inode.vattr.size)
        for index, seg_id in enumerate(bmap.direct[1:], 1):
            name = self._block_name(seg_id, Btype.SEGMENT, inode, "segment")
            if name is not None:
                inode.segments.append(BlockRef(index, seg_id, name.blob))
        ordinals: Dict[Tuple[int, int], int] = collections.Counter()
        seen: Set[bytes] = set()
        for tree, root_id in enumerate(bmap.tree_roots):
            if root_id == NULL_ID:
                continue
            self._expect(len(bmap.direct) == DIRECT_BLOCKS, inode.blob,
                         "tree %d used with only %d direct blocks" % (tree, len(bmap.direct)))  # fmt: skip
            self._expect(all(r != NULL_ID for r in bmap.tree_roots[:tree]), inode.blob,
                         "tree %d used while an earlier tree is empty" % tree)  # fmt: skip
            # Depth-first, pointers in order; level `tree` holds segment ids.
            stack: List[Tuple[bytes, int]] = [(root_id, 0)]
            while stack:
                block_id, level = stack.pop()
                if block_id in seen:
                    self._violation(inode.blob, "indirect block %s is reached twice (a cycle)" % block_id.hex())
                    continue
                seen.add(block_id)
                name = self._block_name(block_id, Btype.INDIRECT, inode, "indirect block")
                if name is None:
                    continue
                obj = self.read_object(name.blob)
                ordinal = ordinals[(tree, level)]
                ordinals[(tree, level)] += 1
                inode.indirects.append(IndirectRef(tree, level, ordinal, block_id, name.blob, obj))
                self._check_databack(obj, inode, (tree << 16) + level, "indirect block")
                children = obj.indir if obj.indir is not None else []
                self._expect(obj.handle_types == _INDIRECT_HANDLES, name.blob,
                             "indirect block handles are %s" % _names(obj.handle_types))  # fmt: skip
                self._expect(NULL_ID not in children, name.blob, "indirect block holds a NULL id")
                if level == tree:
                    if len(inode.segments) + len(children) > limit:
                        self._violation(inode.blob, overrun)
                        return
                    for seg_id in children:
                        seg = self._block_name(seg_id, Btype.SEGMENT, inode, "segment")
                        if seg is not None:
                            inode.segments.append(BlockRef(len(inode.segments) + 1, seg_id, seg.blob))
                else:
                    stack.extend((child, level + 1) for child in reversed(children) if child not in seen)

    # --- directories -------------------------------------------------------

    def dir_segments(self, inode: Inode) -> List[Tuple[BlockRef, DecodedObject]]:
        """The decoded directory segments of a directory inode, in block order (§9.7)."""
        cached = self._dir_segments.get(inode.fh)
        if cached is not None:
            return cached
        out = []
        for ref in inode.segments:
            obj = self.read_object(ref.blob)
            self._expect(obj.handle_types == _DIR_SEGMENT_HANDLES and obj.data == b"", ref.blob,
                         "directory segment is not DIRENTS, empty DATA, DATABACK")  # fmt: skip
            offset = FIRST_SEGMENT_BYTES + (ref.index - 1) * DIR_OTHER_SEGMENT_BYTES
            self._check_databack(obj, inode, offset, "directory segment")
            out.append((ref, obj))
        self._dir_segments[inode.fh] = out
        return out

    def _listing(self, inode: Inode) -> List[Tuple[bytes, bytes]]:
        """Children of a directory, without ``.`` and ``..`` (§17.2 step 3)."""
        cached = self._listings.get(inode.fh)
        if cached is not None:
            return cached
        first = inode.obj.dirents or []
        segments = [obj.dirents or [] for _, obj in self.dir_segments(inode)]
        children = list(first[2:])
        for entries in segments:
            children.extend(entries)
        seen: Set[bytes] = set()
        for name, _ in children:  # the walk skips these entries (see _walk)
            why = bad_name(name) or ("a duplicate entry name" if name in seen else None)
            self._expect(why is None, inode.blob, "bad or duplicate entry name %r: %s" % (name[:300], why))
            seen.add(name)
        # §12.4: size = Σ over segments (4 + entry bytes); reconciled dirs may differ (§10.3).
        if inode.name.version == OBJ_VERSION_INITIAL:
            size = sum(4 + sum(6 + len(n) + len(f) for n, f in seg) for seg in [first] + segments)
            self._expect(inode.vattr.size == size, inode.blob,
                         "directory size %d, entries stream is %d" % (inode.vattr.size, size))  # fmt: skip
        self._listings[inode.fh] = children
        return children

    # --- the walk ----------------------------------------------------------

    def _inode(self, fh: bytes, listing_blob: str) -> Optional[Inode]:
        """Decode (once) the inode of ``fh``.

        With a full listing at hand, the highest-version name of the id is
        what both lookups of §17.2 step 4 find: the fast-path name when the
        object was never reconciled, the prefix match otherwise.
        """
        cached = self._inodes.get(fh)
        if cached is not None:
            return cached
        name = self.latest(fh)
        if not self._expect(name is not None, listing_blob, "dangling entry: no blob for fh %s" % fh.hex()):
            return None
        assert name is not None
        try:
            inode = self._load_inode(fh, name)
        except FormatError as exc:
            if self.strict:
                raise
            self._violation(name.blob, "cannot be decoded: %s" % exc)  # the walk goes on without it
            return None
        self._inodes[fh] = inode
        return inode

    def _walk(self) -> List[WalkEntry]:
        root_name = self.root_name()
        self._reached.add(root_name.blob)
        root = self._load_inode(ROOT_ID, root_name)
        if not root.is_dir:  # nothing below it can be found: lenient or not, there is no tree to walk
            raise FormatError("%s: the root inode is not a directory (btype %d)" % (root.blob, root.btype))
        self._inodes[ROOT_ID] = root
        entries = [WalkEntry(b"", ROOT_ID, root)]
        self._children = {b"": []}
        self.skipped = []
        parents: Dict[bytes, List[bytes]] = collections.defaultdict(list)
        # Depth-first, children in listing order; a stack of listing iterators. Every directory is
        # entered once (a second path to it is refused), so the walk ends and its depth is bounded.
        stack: List[Tuple[bytes, Inode, Iterator[Tuple[bytes, bytes]]]] = [(b"", root, iter(self._listing(root)))]
        while stack:
            path, parent, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                continue
            name, fh = child
            child_path = path + b"/" + name if path else name
            why = bad_name(name)
            if why is None and name in self._children[path]:
                why = "a duplicate entry name"
            if why is not None:
                self._skip(child_path, parent.blob, "%s (entry in %s)" % (why, parent.blob), report=False)  # _listing did
                continue
            inode = self._inode(fh, parent.blob)
            if inode is None:
                found = self.latest(fh)
                why = ("its inode %s cannot be decoded" % found.blob if found is not None
                       else "no blob for its fh %s (entry in %s)" % (fh.hex(), parent.blob))  # fmt: skip
                self.skipped.append(SkippedEntry(child_path, why, refused=False))
                continue
            if inode.is_dir and parents[fh]:
                self._skip(child_path, inode.blob, "directory %s reached twice (a cycle or a directory hard link)"
                           % inode.blob)  # fmt: skip
                continue
            entry = WalkEntry(child_path, parent.fh, inode)
            entries.append(entry)
            self._children[path].append(name)
            parents[fh].append(parent.fh)
            if inode.is_dir:
                dirents = inode.obj.dirents or []
                self._expect(len(dirents) >= 2 and dirents[1][1] == parent.fh, inode.blob,
                             "the .. entry is not the listing parent")  # fmt: skip
                self._children[child_path] = []
                stack.append((child_path, inode, iter(self._listing(inode))))
        # §13: BACK is the multiset of the directories that list the object.
        for fh, listed_in in parents.items():
            inode = self._inodes[fh]
            if inode.is_dir:
                continue
            back = sorted(b for b in inode.obj.back or [] if b != NULL_FH)
            self._expect(back == sorted(listed_in), inode.blob,
                         "BACK %s differs from the listing parents %s"
                         % ([b.hex() for b in back], [b.hex() for b in sorted(listed_in)]))  # fmt: skip
        return entries

    def _skip(self, path: bytes, blob: str, why: str, report: bool = True) -> None:
        """Refuse one listed entry: a skipped path, and (``report``) a violation of ``blob``."""
        if report:
            self._violation(blob, "entry %r: %s" % (path.rpartition(b"/")[2][:300], why))
        self.skipped.append(SkippedEntry(path, why))

    def walk(self) -> Iterator[WalkEntry]:
        """Every path from the root down, depth-first in listing order (root first)."""
        if self._entries is None:
            self._entries = self._walk()
            self._by_path = {e.path: e for e in self._entries}
            for e in self._entries:
                self._links.setdefault(e.fh, []).append(e.path)
        return iter(self._entries)

    @property
    def entries(self) -> List[WalkEntry]:
        """All walk entries as a list."""
        return list(self.walk())

    def lookup(self, path: bytes) -> WalkEntry:
        """The entry of ``path`` (relative to the root, ``b""`` for the root)."""
        self.walk()
        key = bytes(path).strip(b"/")
        try:
            return self._by_path[key]
        except KeyError:
            raise FileNotFoundError("no such path in the container: %r" % key) from None

    def listdir(self, path: bytes = b"") -> List[bytes]:
        """The names in a directory the walk reached, in listing order (see :attr:`skipped` for the rest)."""
        entry = self.lookup(path)
        if not entry.inode.is_dir:
            raise NotADirectoryError("not a directory in the container: %r" % path)
        return list(self._children.get(entry.path, []))

    def links(self, fh: bytes) -> List[bytes]:
        """Every path that reaches ``fh``, sorted (several for hard links)."""
        self.walk()
        return sorted(self._links.get(bytes(fh), []))

    # --- file content ------------------------------------------------------

    def file_segments(self, inode: Inode) -> Iterator[Tuple[BlockRef, DecodedObject]]:
        """Decode a file's data segments in block order, checking each (§9.6, §11.2)."""
        size = inode.vattr.size
        for ref in inode.segments:
            obj = self.read_object(ref.blob)
            offset = FIRST_SEGMENT_BYTES + (ref.index - 1) * OTHER_SEGMENT_BYTES
            self._expect(obj.handle_types == _DATA_SEGMENT_HANDLES, ref.blob,
                         "data segment handles are %s" % _names(obj.handle_types))  # fmt: skip
            self._check_databack(obj, inode, offset, "data segment")
            expected = min(OTHER_SEGMENT_BYTES, size - offset)
            self._expect(len(obj.data or b"") == expected, ref.blob,
                         "segment holds %d bytes, expected %d" % (len(obj.data or b""), expected))  # fmt: skip
            yield ref, obj

    def iter_content(self, inode: Inode) -> Iterator[bytes]:
        """Stream a file's bytes: inode DATA, then every segment's DATA (§17.2 step 5).

        For regular files the total is checked against VATTR.size; a symlink's
        DATA is its raw target.
        """
        first = inode.obj.data or b""
        total = len(first)
        yield first
        for _, obj in self.file_segments(inode):
            chunk = obj.data or b""
            total += len(chunk)
            yield chunk
        if inode.btype == Btype.REG:
            self._expect(total == inode.vattr.size, inode.blob,
                         "content is %d bytes, VATTR size %d" % (total, inode.vattr.size))  # fmt: skip

    def read_file(self, path: bytes) -> bytes:
        """The whole content of a file (or a symlink's target) at ``path``."""
        return b"".join(self.iter_content(self.lookup(path).inode))

    # --- whole-container checks --------------------------------------------

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
