"""The base of the container reader: its names, its source, the sanity violations found, the bucket.

Each step of reading a container (:mod:`.inodes`, :mod:`.walk`,
:mod:`.content`) builds on :class:`ContainerCore`; :class:`~clfsload.clfs.container.Container`
is the last of them. Every check reports through :meth:`ContainerCore._violation`:
``strict`` raises the first, otherwise they accumulate in ``problems``.
"""

from typing import Dict, List, Optional, Set, Tuple

from ..._native import hashing
from ...errors import FormatError
from ..constants import Obtype
from ..decode import DecodedObject, decode_payload
from .inodes_model import BlockRef, Inode
from .names import BlobNames
from .sources import BlobSource
from .walk_model import SkippedEntry, WalkEntry

__all__ = ["ContainerCore", "ceil_div", "handle_names"]


def ceil_div(a: int, b: int) -> int:
    """``a / b`` rounded up (positive ``b``)."""
    return -(-a // b)


def handle_names(handle_types: List[int]) -> str:
    """Handle types as readable names, e.g. ``VATTR,BMAP,NAME``."""
    return ",".join(t.name if isinstance(t, Obtype) else str(t) for t in handle_types)


class ContainerCore(BlobNames):
    """A container's names and source, and the state the reading steps share (caches, violations)."""

    def __init__(self, source: BlobSource, strict: bool = True, allow_unfinished: bool = False) -> None:
        super().__init__(source.names(), allow_unfinished)
        self.source = source
        self.strict = strict
        #: sanity violations found so far (only when not strict)
        self.problems: List[str] = []
        self._problem_set: Set[str] = set()
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
