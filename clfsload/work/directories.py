"""Storing directories, and the inodes of huge files loaded in ranges: what both a unit and the driver write.

A unit stores its own directory once its entries are stored
(:meth:`clfsload.work.transfer.UnitRunner.run`); the driver stores the
directories whose parts ran as units of their own (a huge directory's
batches, a directory with huge files), the inodes of those huge files once
every range is back, and (as :class:`~clfsload.work.units.DirWrite` units)
the directories deferred until their listing's handles were settled. The
inode of each goes last, once everything it names is stored (FMT §11.5).
"""

import os
from concurrent.futures import Future
from typing import List, Optional, Tuple, Union

from .. import crashpoints
from ..clfs.constants import ROOT_ID
from ..clfs.objects import InodeName, directory_blobs, root_extattrs
from ..clfs.vattr import VAttr, vattr_from_stat
from ..errors import EncodeError, TerminalError
from .ids import IdMint
from .protocols import BlobUploader
from .ranges import FileAssembly
from .reasons import store_failure
from .scan import EntryStat, Problem
from .units import DirTask, DirWrite, RunParams, SplitDir, UnitFailed
from .upload import first_error


class DirectoryWriter:
    """Stores directories and ranged files' inodes of one run through one uploader."""

    def __init__(self, params: RunParams, uploader: BlobUploader, mint: Optional[IdMint] = None):
        self.params = params
        self.mint = mint or IdMint(params.containerid, params.secret)
        self.uploader = uploader
        #: None: :meth:`store_directory` waits for its PUTs. A list: it leaves (path, futures)
        #: there instead, and whoever set it settles them (:func:`directory_stored`) before
        #: the unit's outcome leaves the worker (a Dask worker, for a bundle's units at once).
        self.unwaited: Optional[List[Tuple[bytes, List["Future[None]"]]]] = None

    def attrs(self, st: Union[EntryStat, os.stat_result], size: int, nlink: int = 1) -> VAttr:
        """The VATTR of an object of this stat, size and link count in this run."""
        return vattr_from_stat(st, size, nlink, self.params.fsid, self.params.containerid)

    def store_ranged_file(self, assembly: FileAssembly) -> None:
        """Store the indirect blocks, then the inode, of a file whose ranges are all stored (the driver).

        Raises TerminalError, or UnitFailed naming the file.
        """
        path = assembly.huge.path
        try:
            blobs = assembly.blobs(self)
        except EncodeError as exc:
            raise UnitFailed(Problem(path, str(exc))) from None
        # The inode goes last, once everything it names is stored (FMT §11.5).
        error = first_error([self.uploader.submit(blob) for blob in blobs[:-1]])
        if error is None:
            error = first_error([self.uploader.submit(blobs[-1])])
            crashpoints.reached("inode")
        if isinstance(error, TerminalError):
            raise error
        if error is not None:
            raise UnitFailed(Problem(path, store_failure(error)))

    def store_split_directory(self, task: DirTask, split: SplitDir, children: List[Tuple[int, bytes, bytes]]) -> None:
        """Store a directory whose entries were loaded in batches (the driver, once all are back)."""
        self.store_directory(task, EntryStat.unpack(split.stat), split_listing(split, children), split.subdir_count)

    def write_directory(self, write: DirWrite) -> Optional[Problem]:
        """Store a deferred directory (:class:`DirWrite`); its Problem if it could not be stored."""
        try:
            self.store_directory(write.task, EntryStat.unpack(write.stat), list(write.children), write.subdir_count)
        except UnitFailed as exc:
            return exc.problem
        return None

    def check_directory_attrs(self, task: DirTask, st: EntryStat) -> None:
        """Raise UnitFailed if the directory's attributes cannot be stored (before its store is deferred)."""
        try:
            self.attrs(st, 0)
        except EncodeError as exc:
            raise UnitFailed(Problem(task.path, str(exc))) from None

    def store_directory(self, task: DirTask, st: EntryStat, children, subdir_count: int) -> None:
        """Store a directory's segments, then its inode; ``children`` are (name, fh) in listing order.

        Raises TerminalError, or UnitFailed naming the directory (with
        :attr:`unwaited` set, its PUTs are left there to be settled).
        """
        is_root = task.fh == ROOT_ID
        try:
            attrs = self.attrs(st, 0)
        except EncodeError as exc:
            raise UnitFailed(Problem(task.path, str(exc))) from None
        blobs = directory_blobs(
            attrs,
            task.fh,
            task.parent_fh,
            children,
            subdir_count,
            task.name,
            InodeName(task.parent_fh),
            root_extattrs() if is_root else None,
            ids=self.mint.block_ids(task.fh),
        )
        futures = []
        pending = list(blobs)  # segments, then the inode last
        for index, blob in enumerate(pending):
            futures.append(self.uploader.submit(blob))
            crashpoints.reached("inode" if index == len(pending) - 1 else "dir-segment")
        if self.unwaited is not None:
            self.unwaited.append((task.path, futures))
            return
        directory_stored(task.path, futures)


def directory_stored(path: bytes, futures: List["Future[None]"]) -> None:
    """Wait for the PUTs of the directory at ``path``; raise TerminalError, or UnitFailed naming it, if one failed."""
    error = first_error(futures)
    if isinstance(error, TerminalError):
        raise error
    if error is not None:
        raise UnitFailed(Problem(path, store_failure(error)))


def split_listing(split: SplitDir, children: List[Tuple[int, bytes, bytes]]) -> List[Tuple[bytes, bytes]]:
    """The (name, fh) listing of a split directory: its subdirectories and the entries its parts stored, in scan order."""
    return [(n, fh) for _, n, fh in sorted(list(split.subdirs) + list(children))]


__all__ = ["DirectoryWriter", "directory_stored", "split_listing"]
