"""What the reader makes of an inode: its decoded object and its resolved block map."""

from dataclasses import dataclass, field
from typing import List

from ..constants import Btype
from ..decode import DecodedObject
from ..vattr import VAttr
from .names import BlobName

__all__ = ["BlockRef", "IndirectRef", "Inode"]


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
