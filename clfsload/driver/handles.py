"""Handles the driver settles or names itself (FMT §2.2), outside the units that scan.

* A hard-linked object's handle takes the dmid of the directory its first
  backpointer names, known only once every directory has been scanned:
  :func:`settle_link_handles` fixes them before RECONCILE, and
  :func:`dir_writes` gives the directories that list them, with the settled
  handles, as :class:`~clfsload.work.transfer.DirWrite` units.
* A directory with more subdirectories than its link count reserved counter
  values for (btrfs reports 1): :func:`name_subdirs` gives the extra ones
  values of the same run-wide counter, so the spread stays exact.
"""

import os
from typing import List

from ..errors import ClfsLoadError
from ..work.ids import IdMint, is_linked
from ..work.units import DirResult, DirTask, DirWrite
from .state import StateStore


class UnsettledHandle(ClfsLoadError):
    """A deferred directory lists an entry whose handle was never settled (an internal error)."""


def settle_link_handles(state: StateStore, mint: IdMint) -> int:
    """Settle every unsettled hard-linked object's handle on its first parent (committed); returns links dropped."""
    dropped = state.drop_pathless_links()
    handles = [(key, mint.settled_linked_fh(key, parent)) for key, parent in state.unsettled_links()]
    if handles or dropped:
        state.settle_links(handles)
    return dropped


def dir_writes(state: StateStore, limit: int, after: bytes) -> List[DirWrite]:
    """The next deferred directories (fh above ``after``), their hard-linked entries under their settled handles."""
    rows = state.deferred_dirs(limit, after)
    keys = [fh for _, _, listing, _ in rows for _, fh in listing if is_linked(fh)]
    handles = state.link_handles(keys)
    writes = []
    for task, st, listing, subdir_count in rows:
        children = []
        for name, fh in listing:
            if fh in handles:
                fh = handles[fh]
            elif not fh or is_linked(fh):
                raise UnsettledHandle("internal error: %s lists '%s' with no settled handle; run again to resume"
                                      % (os.fsdecode(task.path), os.fsdecode(name)))
            children.append((name, fh))
        writes.append(DirWrite(task, st, tuple(children), subdir_count))
    return writes


def name_subdirs(state: StateStore, mint: IdMint, task: DirTask, result: DirResult) -> bool:
    """Name the subdirectories past the unit's reservation from the run-wide counter; True if there were any.

    Their directory is stored after its unit: at the start of RECONCILE (a
    DirWrite unit), or by the driver once the parts of a split directory are back.
    """
    unminted = [sub for sub in result.subdirs if not sub.fh]
    if not unminted:
        return False
    base = state.take_dir_counter(len(unminted))
    minted = {sub.name: mint.dir_fh(task.fh, sub.seq, base + index + 1) for index, sub in enumerate(unminted)}
    result.subdirs = [sub if sub.fh else sub._replace(fh=minted[sub.name]) for sub in result.subdirs]
    if result.split is not None:
        result.split.subdirs = [(pos, name, fh or minted[name]) for pos, name, fh in result.split.subdirs]
    if result.deferred is not None:
        result.deferred.children = [(name, fh or minted[name]) for name, fh in result.deferred.children]
    return True
