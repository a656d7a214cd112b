"""Taking entries out of a stored directory, or putting them back.

With ``--publish_with_errors`` a directory that failed outright, or a
hard-linked object that failed in RECONCILE, has no inode; the directories
that list it are rewritten without it, so the published tree never holds a
dangling entry. When a later run loads it after all, the entry goes back.

The directory is read back from the target (:mod:`clfsload.clfs.stored`),
its entry list edited, and it is written again under the same names with
the same attributes: segments first, the inode last, then the segments it
no longer uses are deleted. Segment ids come from the run's
:class:`~clfsload.work.ids.IdMint`, so an edit run twice writes the same blobs.
"""

from typing import Iterable, List, Sequence, Set, Tuple

from ..clfs.constants import ROOT_ID, TMP_PREFIX, Ftype
from ..clfs.objects import InodeName, directory_blobs, seal
from ..clfs.stored import directory_entries, find_inode_blob, parent_of, read_inode
from ..work.ids import IdMint
from ..targets.base import BlobTarget

Entry = Tuple[bytes, bytes]  # (name, fh)


def edit_directory(
    target: BlobTarget,
    mint: IdMint,
    fh: bytes,
    compress: bool,
    remove: Iterable[bytes] = (),
    add: Sequence[Entry] = (),
) -> bool:
    """Drop the entries named in ``remove``, append those in ``add`` not listed yet.

    Returns False when the directory is not in the container (nothing to
    edit) or already reads as asked; True when it was rewritten.
    """
    fh = bytes(fh)
    blob = find_inode_blob(target, fh, want_dir=True)
    if blob is None:
        return False
    inode = read_inode(target.get, blob, fh)
    entries = directory_entries(target.get, inode)
    dropped: Set[bytes] = set(remove)
    kept: List[Entry] = [(n, f) for n, f in entries if n not in dropped]
    present = {n for n, _ in kept}
    kept.extend((n, f) for n, f in add if n not in present)
    if kept == entries:
        return False
    obj = inode.obj
    assert obj.vattr is not None
    parent = parent_of(inode) or ROOT_ID
    owner = ROOT_ID if fh == ROOT_ID else parent
    version = int(blob.split(".")[3])  # V2 name token 3 is the object version (FMT §4.6)
    subdirs = sum(1 for _, child in kept if len(child) > 6 and child[6] == Ftype.DIR)
    blobs = list(
        directory_blobs(
            obj.vattr.vattr,
            fh,
            parent,
            kept,
            subdirs,
            obj.name or b"",
            InodeName(owner, version),
            obj.extattrs if fh == ROOT_ID else None,
            ids=mint.block_ids(fh),
        )
    )
    written = set()
    for index, new in enumerate(blobs):
        name = new.name
        published = index == len(blobs) - 1 and name.startswith(TMP_PREFIX) and not blob.startswith(TMP_PREFIX)
        if published:
            name = blob  # a published root is edited in place
        sealed = seal(new._replace(name=name), compress)
        if published:
            target.sync()  # its new segments durable before the root that names them
            target.publish(sealed.name, sealed.payload)  # never torn under its name
        else:
            target.put(sealed.name, sealed.payload)
        written.add(sealed.name)
    # The new blobs durable before the old blocks go: a power loss in between
    # must not leave the stored directory naming blocks that are gone.
    target.sync()
    for old in inode.block_names:
        if old not in written:
            target.delete(old)
    return True


def group_by_parent(entries: Iterable[Tuple[bytes, bytes, bytes]]) -> List[Tuple[bytes, List[Entry]]]:
    """``(parent fh, name, fh)`` rows grouped by parent, in first-seen order."""
    groups: dict = {}
    for parent, name, fh in entries:
        groups.setdefault(bytes(parent), []).append((bytes(name), bytes(fh)))
    return list(groups.items())


__all__ = ["edit_directory", "group_by_parent"]
