"""Decoding inodes and resolving their block maps, with the checks of §9, §11 and §17.2 step 9."""

import collections
import stat
from typing import Dict, List, Optional, Set, Tuple

from ..._native import hashing
from ...errors import FormatError
from ..constants import (
    DIR_OTHER_SEGMENT_BYTES,
    DIRECT_BLOCKS,
    FIRST_SEGMENT_BYTES,
    NULL_FH,
    NULL_ID,
    OTHER_SEGMENT_BYTES,
    ROOT_ID,
    SYMLINK_TARGET_MAX,
    Btype,
    Obtype,
)
from ..decode import DecodedObject
from .core import ContainerCore, ceil_div, handle_names
from .inodes_model import BlockRef, IndirectRef, Inode
from .names import BlobName

__all__ = ["InodeReader"]

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
_INDIRECT_HANDLES = [Obtype.INDIR, Obtype.DATABACK]
# fh byte 6 holds the Ftype (§2.5); Ftype -> Btype
_FTYPE_BTYPE = {1: Btype.DIR, 2: Btype.REG, 3: Btype.LNK, 4: Btype.BLK, 5: Btype.CHR, 6: Btype.SOCK, 7: Btype.FIFO}


class InodeReader(ContainerCore):
    """Reads one inode: its object, its handle sequence, its segments and indirect blocks (bounded)."""

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
            expected = ceil_div(max(0, attrs.size - FIRST_SEGMENT_BYTES), OTHER_SEGMENT_BYTES)
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
            handle_names(obj.handle_types), handle_names(expected)))  # fmt: skip
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
            return ceil_div(max(0, attrs.size - FIRST_SEGMENT_BYTES), OTHER_SEGMENT_BYTES)
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
                             "indirect block handles are %s" % handle_names(obj.handle_types))  # fmt: skip
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
