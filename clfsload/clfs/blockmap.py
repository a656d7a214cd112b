"""Block maps and indirect-block trees (§11.2-§11.4).

Block 0 of an object is its inode. Blocks 1..1023 are listed directly in the
BMAP; later blocks go into up to four indirect trees, tree t having t+1
levels of 4096-pointer blocks. :class:`BlockMapBuilder` reproduces the
reference's construction byte for byte, including the empty indirect blocks
of §11.4, and hands every closed indirect block to a callback as soon as it
is complete, so a huge file never keeps its tree in memory.
"""

import uuid
from typing import Callable, List, Optional, Sequence, Tuple

from ..errors import EncodeError
from .constants import BMAP_TREE_COUNT, DIRECT_BLOCKS, INDIR_POINTERS, NULL_ID

#: callback(block_id, child_ids, databack_offset) for each closed indirect block
EmitIndirect = Callable[[bytes, List[bytes], int], None]


def new_block_id() -> bytes:
    """A fresh 16-byte id for a segment or an indirect block (a UUID4)."""
    return uuid.uuid4().bytes


class RandomBlockIds:
    """Segment and indirect-block ids drawn as fresh UUID4s, as the reference does.

    The loader passes a deterministic maker with the same two methods
    (:class:`clfsload.work.ids.BlockIds`) so a re-run overwrites its own blobs.
    """

    def __init__(self, owner_fh: bytes = b""):
        self.owner_fh = owner_fh

    def segment(self, index: int) -> bytes:
        """The id of data segment ``index`` (1-based block index)."""
        return new_block_id()

    def next_indirect(self) -> bytes:
        """The id of the next indirect block."""
        return new_block_id()


def segment_count(size: int, first: int, other: int) -> int:
    """Segments after the inode for ``size`` bytes: ceil(max(0, size - first) / other)."""
    return max(0, -(-(size - first) // other))


def segment_offset(index: int, first: int, other: int) -> int:
    """Byte offset of segment ``index`` (1-based block index) in the data stream."""
    return first + (index - 1) * other


def tree_capacity(tree: int, fanout: int = INDIR_POINTERS) -> int:
    """Data blocks tree ``tree`` can hold: fanout ** (tree + 1)."""
    return fanout ** (tree + 1)


class BlockMapBuilder:
    """Collects segment ids in block order; produces ``(direct_ids, tree_roots)``.

    ``direct`` and ``fanout`` exist so tests can run the algorithm scaled down
    (spec §11.4 illustrates it with 1 direct block and 3 pointers per block).
    """

    def __init__(
        self,
        emit: EmitIndirect,
        new_id: Callable[[], bytes] = new_block_id,
        direct: int = DIRECT_BLOCKS - 1,
        fanout: int = INDIR_POINTERS,
    ):
        self._emit = emit
        self._new_id = new_id
        self._direct_limit = direct
        self._fanout = fanout
        self.direct: List[bytes] = []
        self.roots: List[bytes] = [NULL_ID] * BMAP_TREE_COUNT
        self._tree = 0
        self._in_tree = 0  # data ids the current tree received
        self._open: Optional[List[List[bytes]]] = None  # open block per level 0..tree

    def add(self, block_id: bytes) -> None:
        """Append the id of the next data block."""
        if len(self.direct) < self._direct_limit:
            self.direct.append(block_id)
            return
        if self._tree >= BMAP_TREE_COUNT:
            raise EncodeError("object has more blocks than four indirect trees can map")
        if self._open is None:
            self._open = [[] for _ in range(self._tree + 1)]
            self._in_tree = 0
        self._in_tree += 1
        leaf = self._tree
        self._open[leaf].append(block_id)
        level = leaf
        # Cascade: a full block closes and its id may fill its parent in turn.
        while self._open is not None and len(self._open[level]) >= self._fanout:
            self._close(level)
            level -= 1

    def _close(self, level: int) -> None:
        assert self._open is not None
        block_id = self._new_id()
        children = self._open[level]
        self._emit(block_id, children, (self._tree << 16) + level)
        self._open[level] = []
        if level == 0:
            # The root closed: this tree is complete, the next id starts a new one.
            self.roots[self._tree] = block_id
            self._tree += 1
            self._open = None
        else:
            self._open[level - 1].append(block_id)

    def finish(self) -> Tuple[List[bytes], List[bytes]]:
        """Close an incomplete tree (leaf to root, every level, even if empty).

        Returns ``(direct_ids, tree_roots)``: the segment ids for BMAP.direct[1..]
        and the four root ids (NULL id where unused).
        """
        if self._open is not None and self._in_tree:
            for level in range(self._tree, -1, -1):
                self._close(level)
        return self.direct, self.roots


def block_ids_in_order(
    direct_ids: Sequence[bytes],
    tree_roots: Sequence[bytes],
    read_indirect: Callable[[bytes], Sequence[bytes]],
) -> List[bytes]:
    """All data block ids of an object in block order, reading indirect blocks as needed.

    ``read_indirect(id)`` returns the child ids of an indirect block. Tree t is
    walked depth first with t+1 levels; empty blocks are allowed (§11.4).
    """
    out = list(direct_ids)

    def walk(block_id: bytes, depth: int) -> None:
        children = read_indirect(block_id)
        if depth == 0:
            out.extend(children)
        else:
            for child in children:
                walk(child, depth - 1)

    for tree, root in enumerate(tree_roots):
        if root != NULL_ID:
            walk(root, tree)
    return out
