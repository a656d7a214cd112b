"""Reading one stored inode back by its filehandle: its blocks and its entries.

The container walker (:mod:`clfsload.clfs.container`) reads a whole
container from a listing. The loader's repair steps (the sweep, pruning and
restoring entries) need one object at a time, found by name arithmetic:
every segment and indirect block of an object is named from its id, its
btype and its owner's fh (FMT §4.1, §4.4), so no listing is needed to find
them. ``get`` is any callable that returns a blob's payload.
"""

from typing import Callable, List, NamedTuple, Optional, Tuple

from .._native import hashing
from .constants import NULL_ID, ROOT_ID, TMP_PREFIX, Btype
from .container import parse_blob_name
from .decode import DecodedObject, decode_payload
from .objects import final_root_name

Getter = Callable[[str], bytes]


class StoredInode(NamedTuple):
    """A decoded inode and the blob names of its blocks."""

    blob: str
    obj: DecodedObject
    #: data (or directory) segments in block order
    segments: List[str]
    #: indirect blocks, depth-first
    indirects: List[str]

    @property
    def block_names(self) -> List[str]:
        """Every segment and indirect-block name."""
        return self.segments + self.indirects


def root_names() -> Tuple[str, str]:
    """The root's (``tmp`` name, final name) (FMT §4.5)."""
    final = final_root_name()
    return TMP_PREFIX + final, final


def read_inode(get: Getter, blob: str, fh: bytes) -> StoredInode:
    """Decode the inode in ``blob`` (of object ``fh``) and name its blocks (FMT §11.2, §11.3)."""
    obj = decode_payload(get(blob), blob)
    if obj.bmap is None:
        raise ValueError("%s: inode without a block map" % blob)
    segments = [hashing.blob_name(seg, Btype.SEGMENT, fh) for seg in obj.bmap.direct[1:]]
    indirects: List[str] = []
    for tree, root_id in enumerate(obj.bmap.tree_roots):
        if root_id == NULL_ID:
            continue
        stack = [(root_id, 0)]  # depth-first, pointers in order; level `tree` holds segment ids
        while stack:
            block_id, level = stack.pop()
            name = hashing.blob_name(block_id, Btype.INDIRECT, fh)
            indirects.append(name)
            children = decode_payload(get(name), name).indir or []
            if level == tree:
                segments.extend(hashing.blob_name(seg, Btype.SEGMENT, fh) for seg in children)
            else:
                stack.extend((child, level + 1) for child in reversed(children))
    return StoredInode(blob, obj, segments, indirects)


def find_inode_blob(target, fh: bytes, want_dir: bool = False) -> Optional[str]:
    """The highest-version inode name of ``fh`` in ``target`` (the root: ``tmp`` first, then final).

    Uses a prefix listing (FMT §4.6), so it costs one list call.
    """
    if bytes(fh) == ROOT_ID:
        for blob in root_names():
            if blob in target.list_names(blob):
                return blob
        return None
    found = [parse_blob_name(b) for b in target.list_names(hashing.name_prefix(fh))]
    inodes = [n for n in found if n is not None and n.btype not in (Btype.SEGMENT, Btype.INDIRECT)]
    if want_dir:
        inodes = [n for n in inodes if n.btype == Btype.DIR]
    return max(inodes, key=lambda n: n.version).blob if inodes else None


def directory_entries(get: Getter, inode: StoredInode) -> List[Tuple[bytes, bytes]]:
    """A stored directory's ``(name, fh)`` entries in stored order, ``.`` and ``..`` excluded."""
    entries = list((inode.obj.dirents or [])[2:])
    for name in inode.segments:
        entries.extend(decode_payload(get(name), name).dirents or [])
    return entries


def parent_of(inode: StoredInode) -> Optional[bytes]:
    """The ``..`` entry of a stored directory."""
    dirents = inode.obj.dirents or []
    return dirents[1][1] if len(dirents) > 1 else None


def is_root(fh: bytes) -> bool:
    """True for the root's filehandle."""
    return bytes(fh) == ROOT_ID


__all__ = ["Getter", "StoredInode", "directory_entries", "find_inode_blob", "is_root", "parent_of", "read_inode", "root_names"]
