"""Walking a container from the root (§12, §13, §17.2): directory listings, paths, hard links."""

import collections
from typing import Dict, Iterator, List, Optional, Set, Tuple

from ...errors import FormatError
from ..constants import (
    DIR_OTHER_SEGMENT_BYTES,
    FIRST_SEGMENT_BYTES,
    NULL_FH,
    OBJ_VERSION_INITIAL,
    ROOT_ID,
    Obtype,
)
from ..decode import DecodedObject
from .inodes import InodeReader
from .inodes_model import BlockRef, Inode
from .walk_model import SkippedEntry, WalkEntry, bad_name

__all__ = ["TreeWalker"]

_DIR_SEGMENT_HANDLES = [Obtype.DIRENTS, Obtype.DATA, Obtype.DATABACK]


class TreeWalker(InodeReader):
    """The walk: every reachable path once, depth-first in listing order; bad entries refused and reported."""

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
