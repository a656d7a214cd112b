"""The unit of work of TRANSFER: one directory, with every non-directory in it.

A :class:`DirTask` carries all it needs: the directory's path, its own and
its parent's filehandles, its unit number (which fixes the sequence numbers
of its children, see :mod:`clfsload.work.ids`) and the run's parameters. Running
it scans the directory, stores every regular file, symlink and special file
in it, then the directory's own segments and inode, and returns a
:class:`DirResult`: the subdirectories to schedule, the hard links to
reconcile, and the problems met. Running the same task twice writes the same
blobs under the same names, so a crash or a retry never leaves garbage.

Entries that fail are left out of the directory: a published container
never lists an entry whose inode is missing.

The unit types are in :mod:`clfsload.work.units`; :class:`UnitRunner` runs
each of them. Directories are stored by :mod:`clfsload.work.directories`.
"""

import os
import stat
from concurrent.futures import Future, wait
from typing import List, Optional, Tuple, Union

from .. import crashpoints
from .checksum_log import HashingReader, new_hasher
from ..clfs.constants import CLFS_LINK_MAX, CLFS_SYMLINK_LENGTH_MAX, FIRST_SEGMENT_BYTES, ROOT_ID, Ftype
from ..clfs.objects import (
    Blob,
    InodeName,
    Sealed,
    file_blobs,
    small_file_blob,
    special_blob,
    symlink_blob,
    symlink_size,
)
from ..clfs.vattr import VAttr, ftype_of_mode
from ..errors import ClfsLoadError, EncodeError, TerminalError
from .directories import DirectoryWriter
from .ids import IdMint
from .protocols import BlobUploader
from .scan import (
    EntryStat,
    Problem,
    describe_oserror,
    open_for_reading,
    same_content,
    scan_directory,
)
from .prefetch import EntriesAhead, ParallelScan, readable_all
from .source_reads import AheadReader, SourceReads, shared
from .ranges import is_huge, store_range
from .reasons import READ_ATTEMPTS, VANISHED, store_failure, torn_read
from .units import (
    BatchEntry,
    DeferredDir,
    DirResult,
    DirTask,
    DirWrite,
    EntryBatch,
    FileRange,
    HugeFile,
    LinkDone,
    LinkRef,
    LinkTask,
    RangeOutcome,
    RunParams,
    SplitDir,
    SubDir,
    UnitFailed,
)
from .upload import first_error

RECONCILED_VERSION = 11  # FMT §4.3: 9 at transfer, 11 once reconciled


class SourceError(ClfsLoadError):
    """A source object could not be read as it must be; the message is the reason."""


class Vanished(SourceError):
    """The entry is gone since its directory was scanned: left out, with a warning."""


class _DirectoryRunner:
    """The directory units of a :class:`UnitRunner`: listing, numbering, handing out entries, settling their PUTs.

    What stores each non-directory from the source is the subclass's
    (:meth:`UnitRunner.store_object`).
    """

    def __init__(self, params: RunParams, uploader: BlobUploader):
        self.params = params
        self.mint = IdMint(params.containerid, params.secret)
        self.uploader = uploader
        #: stores directories (the unit's own, and deferred ones) through the same uploader
        self.directories = DirectoryWriter(params, uploader, self.mint)
        self._dirty = False  # set when this unit wrote some object twice
        self._checksums: List[Tuple[bytes, bytes]] = []  # of the files stored since the last unit began
        self._ahead: Optional[EntriesAhead] = None  # the entries of the unit running, read ahead
        self._path = b""  # the regular file being read
        self._reads: Optional[SourceReads] = None

    @property
    def reads(self) -> SourceReads:
        """This process's pipeline of source operations (:mod:`clfsload.work.source_reads`)."""
        reads = self._reads
        if reads is None:
            p = self.params
            reads = self._reads = shared(p.source_concurrency, p.source_budget, p.source_timeout)
            # the process's pool (kept for its life: a Dask worker's serves one run after another)
            # reads eagerly for a run whose SOURCE was judged slow, and only for it
            reads.read_eagerly = p.source_slow
        return reads

    def _store_entries(self, parent_fh: bytes, items: List[BatchEntry], result: DirResult, slots) -> None:
        """:meth:`_store_entry` for each item in order, their source reads issued ahead."""
        linked = self.params.preserve_hardlinks
        with EntriesAhead(self.reads, [
            (item.path, item.ftype, item.stat.st_size) for item in items
            if not (linked and item.stat.st_nlink != 1 and item.stat.st_nlink <= CLFS_LINK_MAX)
        ]) as ahead:
            self._ahead = ahead
            try:
                for item in items:
                    self._store_entry(parent_fh, item, result, slots)
            finally:
                self._ahead = None

    def attrs(self, st: Union[EntryStat, os.stat_result], size: int, nlink: int = 1) -> VAttr:
        """The VATTR of an object of this stat, size and link count in this run."""
        return self.directories.attrs(st, size, nlink)

    # --- one directory -------------------------------------------------------

    def run(self, task: DirTask) -> DirResult:
        """Load the directory of ``task``; raises UnitFailed or TerminalError."""
        result = DirResult(task.unit)
        self._dirty = False
        self._checksums = []
        try:
            # Attributes from the directory itself, now, to match the listing
            # that follows (not from the parent's scan, which may be old).
            reads = self.reads
            dir_stat = EntryStat.of(reads.call("lstat", task.path, os.lstat, task.path))
            if task.stat:
                _check_same_directory(task.path, EntryStat.unpack(task.stat), dir_stat)
            entries, problems = scan_directory(task.path, ParallelScan(reads))
        except (FileNotFoundError, NotADirectoryError):
            if task.fh == ROOT_ID:
                raise UnitFailed(Problem(task.path, "the source directory is gone")) from None
            # Like rsync or tar: not an error. FINALIZE takes it out of its parent.
            result.vanished = True
            result.notes.append(("", Problem(task.path, VANISHED).line()))
            return result
        except OSError as exc:
            raise UnitFailed(Problem(task.path, "cannot list directory: %s" % describe_oserror(exc))) from None
        result.problems.extend(problems)
        known = task.known_subdirs or {}
        ranks = {name: rank for rank, name in enumerate(sorted(e.name for e in entries))}
        # The j-th subdirectory by name takes the counter value dmid_base + j + 1.
        dir_ranks = {name: j for j, name in enumerate(sorted(e.name for e in entries if e.ftype == Ftype.DIR))}
        slots: List[Tuple[int, bytes, bytes, List["Future[None]"], bytes]] = []  # pos, name, fh, futures, path
        files: List[BatchEntry] = []
        subdir_count = 0
        # every subdirectory's readability checked at once, in parallel
        subdir_paths = [e.path for e in entries if e.ftype == Ftype.DIR]
        unreadable = dict(zip(subdir_paths, readable_all(reads, subdir_paths)))
        for pos, entry in enumerate(entries):
            seq = self.mint.child_seq(task.unit, ranks[entry.name])
            if entry.ftype != Ftype.DIR:
                files.append(BatchEntry(pos, entry.name, entry.path, entry.stat, entry.ftype, seq))
                continue
            fh = known.get(entry.name) or self._subdir_fh(task, seq, dir_ranks[entry.name])
            reason = unreadable[entry.path]
            if reason is not None:
                result.problems.append(Problem(entry.path, "cannot list directory: %s" % reason))
                continue
            if entry.name in known:
                result.kept_subdirs[entry.name] = fh
            else:
                result.subdirs.append(SubDir(entry.name, entry.path, fh, entry.stat.pack(), seq))
            subdir_count += 1
            slots.append((pos, entry.name, fh, [], entry.path))
        files, huge = self._take_huge_files(task, files, result)
        limit = self.params.batch_entries
        if huge or (limit and len(files) > limit):
            # Stored by the driver once every part is back; small files of a
            # directory with huge ones are stored here, in this unit.
            batches = []
            if limit and len(files) > limit:
                batches = [
                    EntryBatch(task.unit, index, task.fh, task.path, tuple(files[start:start + limit]))
                    for index, start in enumerate(range(0, len(files), limit))
                ]
            else:
                stored: List[Tuple[int, bytes, bytes, List["Future[None]"], bytes]] = []
                self._store_entries(task.fh, files, result, stored)
                result.children = self._settle(stored, result)
                result.dirty = self._dirty
            result.split = SplitDir(dir_stat.pack(), batches, [(p, n, fh) for p, n, fh, _, _ in slots], subdir_count,
                                    huge)
            return result
        self._store_entries(task.fh, files, result, slots)
        slots.sort(key=lambda slot: slot[0])  # scan order, as the listing is stored
        children = [(name, fh) for _, name, fh in self._settle(slots, result)]
        if result.links or any(not fh for _, fh in children):
            self.check_directory_attrs(task, dir_stat)
            result.deferred = DeferredDir(dir_stat.pack(), children, subdir_count)
        else:
            self.store_directory(task, dir_stat, children, subdir_count)
        result.dirty = self._dirty
        return result

    def _subdir_fh(self, task: DirTask, seq: int, dir_rank: int) -> bytes:
        """The handle of the ``dir_rank``-th subdirectory of ``task``; empty past its reservation (the driver mints it).

        On a retry of a unit that completed before (``known_subdirs`` set),
        the subdirectories it scheduled then keep their handles and counter
        values, which the ranks of today's names no longer tell apart: a new
        subdirectory gets its value from the driver, never one in use.
        """
        if task.known_subdirs is None and dir_rank < task.dmid_count:
            return self.mint.dir_fh(task.fh, seq, task.dmid_base + dir_rank + 1)
        return b""

    def _take_huge_files(self, task: DirTask, files: List[BatchEntry],
                         result: DirResult) -> Tuple[List[BatchEntry], List[HugeFile]]:
        """Split off the regular files loaded in ranges; hard-linked ones stay (RECONCILE stores them whole)."""
        per_range = self.params.range_segments
        if not per_range:
            return files, []
        rest: List[BatchEntry] = []
        huge: List[HugeFile] = []
        for item in files:
            st = item.stat
            linked = self.params.preserve_hardlinks and st.st_nlink != 1 and st.st_nlink <= CLFS_LINK_MAX
            if item.ftype == Ftype.REG and not linked and is_huge(st, per_range):
                self._note_too_many_links(item, result)
                fh = self.mint.fh(task.fh, Ftype.REG, item.seq)
                huge.append(HugeFile(task.unit, item.pos, item.name, item.path, fh, task.fh, st))
            else:
                rest.append(item)
        return rest, huge

    def run_batch(self, batch: EntryBatch) -> DirResult:
        """Store the entries of one batch of a huge directory; ``children`` lists those stored."""
        result = DirResult(batch.unit)
        self._dirty = False
        self._checksums = []
        slots: List[Tuple[int, bytes, bytes, List["Future[None]"], bytes]] = []
        self._store_entries(batch.fh, list(batch.entries), result, slots)
        result.children = self._settle(slots, result)
        result.dirty = self._dirty
        return result

    def _store_entry(self, parent_fh: bytes, item: BatchEntry, result: DirResult, slots) -> None:
        """Submit one non-directory's blobs; record it in ``slots``, or its problem in ``result``."""
        st = item.stat
        ftype = Ftype(item.ftype)
        self._note_too_many_links(item, result)
        if self.params.preserve_hardlinks and st.st_nlink != 1 and st.st_nlink <= CLFS_LINK_MAX:
            fh = self.mint.linked_fh(st.st_dev, st.st_ino, ftype)
            result.links.append(LinkRef(fh, parent_fh, item.name, item.path, st.pack()))
            slots.append((item.pos, item.name, fh, [], item.path))
            return
        fh = self.mint.fh(parent_fh, ftype, item.seq)
        try:
            futures, size = self.store_object(item.path, st, ftype, fh, [parent_fh], item.name, InodeName(parent_fh))
        except Vanished:
            result.notes.append(("", Problem(item.path, VANISHED).line()))
            return
        except SourceError as exc:
            result.problems.append(Problem(item.path, str(exc)))
            return
        result.objects += 1
        result.source_bytes += size
        slots.append((item.pos, item.name, fh, futures, item.path))

    def _note_too_many_links(self, item: BatchEntry, result: DirResult) -> None:
        st = item.stat
        if self.params.preserve_hardlinks and st.st_nlink > CLFS_LINK_MAX:
            result.notes.append((
                "nlink:%d:%d" % (st.st_dev, st.st_ino),
                Problem(item.path, "has %d hard links, more than the %d CLFS allows: each of its paths is "
                        "stored as an independent copy" % (st.st_nlink, CLFS_LINK_MAX)).line(),
            ))

    def _settle(self, slots, result: DirResult) -> List[Tuple[int, bytes, bytes]]:
        """Wait for every PUT of ``slots``; the (pos, name, fh) stored, failures made problems.

        Also keeps the checksums of the files stored. One wait for them all:
        waiting entry by entry would wake this thread once per completed PUT.
        """
        wait([future for slot in slots for future in slot[3]])
        stored = []
        kept = set()
        for pos, name, fh, futures, path in slots:
            error = first_error(futures)
            if error is None:
                stored.append((pos, name, fh))
                kept.add(fh)
            elif isinstance(error, TerminalError):
                raise error
            else:
                result.objects -= 1
                result.problems.append(Problem(path, store_failure(error)))
        result.checksums = [(fh, digest) for fh, digest in self._checksums if fh in kept]
        return stored

    def store_range(self, task: FileRange) -> RangeOutcome:
        """Read and store one range of a huge file's segments (:mod:`clfsload.work.ranges`)."""
        return store_range(self, task)

    def write_directory(self, write: DirWrite) -> Optional[Problem]:
        """Store a deferred directory (a :class:`DirWrite` unit); its Problem if it could not be stored."""
        return self.directories.write_directory(write)

    def check_directory_attrs(self, task: DirTask, st: EntryStat) -> None:
        """Raise UnitFailed if the directory's attributes cannot be stored (before its store is deferred)."""
        self.directories.check_directory_attrs(task, st)

    def store_directory(self, task: DirTask, st: EntryStat, children, subdir_count: int) -> None:
        """Store the unit's directory (:meth:`clfsload.work.directories.DirectoryWriter.store_directory`)."""
        self.directories.store_directory(task, st, children, subdir_count)

    def store_object(self, path: bytes, st: EntryStat, ftype: Ftype, fh: bytes, backpointers: List[bytes],
                     name: bytes, where: InodeName) -> Tuple[List["Future[None]"], int]:
        """Submit every blob of one non-directory (:meth:`UnitRunner.store_object`)."""
        raise NotImplementedError


class UnitRunner(_DirectoryRunner):
    """Runs units against one target; one per pool process or Dask thread (or per thread in tests).

    Not the pool process nor the Dask worker that hosts it: the object that
    loads one unit (:meth:`run` a directory, :meth:`run_batch`, :meth:`store_range`,
    :meth:`write_directory`, :meth:`store_linked`; :mod:`clfsload.work.units`
    says which is which). This class stores each non-directory from the
    source, never torn; its base walks the directories.
    """

    # --- one non-directory ---------------------------------------------------

    def store_object(
        self,
        path: bytes,
        st: EntryStat,
        ftype: Ftype,
        fh: bytes,
        backpointers: List[bytes],
        name: bytes,
        where: InodeName,
    ) -> Tuple[List["Future[None]"], int]:
        """Submit every blob of one non-directory; returns (futures, bytes read).

        Raises SourceError when the source cannot be read as it must be.
        """
        nlink = len(backpointers)
        try:
            if ftype == Ftype.REG:
                return self._store_file(path, fh, backpointers, name, where)
            if ftype == Ftype.LNK:
                ahead = self._ahead.take(path) if self._ahead is not None else None
                target = ahead.result() if ahead is not None else self.reads.call("readlink", path, os.readlink, path)
                if len(target) > CLFS_SYMLINK_LENGTH_MAX:
                    raise SourceError(
                        "symlink target of %d bytes exceeds the CLFS limit of %d bytes"
                        % (len(target), CLFS_SYMLINK_LENGTH_MAX)
                    )
                attrs = self.attrs(st, symlink_size(target), nlink)
                future = self.uploader.submit(symlink_blob(target, attrs, fh, backpointers, name, where))
                crashpoints.reached("inode")
                return [future], len(target)
            attrs = self.attrs(st, st.st_size, nlink)
            future = self.uploader.submit(special_blob(attrs, fh, backpointers, name, where))
            crashpoints.reached("inode")
            return [future], 0
        except FileNotFoundError:
            raise Vanished(VANISHED) from None
        except OSError as exc:
            raise SourceError(describe_oserror(exc)) from None
        except EncodeError as exc:
            raise SourceError(str(exc)) from None

    def _store_file(self, path, fh, backpointers, name, where) -> Tuple[List["Future[None]"], int]:
        """Read and store a regular file; read again if it changed meanwhile (never torn).

        A file of the unit running was opened (and, if small, read whole) ahead
        by the pipeline (:func:`clfsload.work.prefetch.open_file`, the same
        rule as :meth:`_store_small_file`); others are opened here.
        """
        self._path = path  # names the file in a report of a hung operation
        ahead = self._ahead.take(path) if self._ahead is not None else None
        if ahead is not None:
            got = ahead.result()  # what open_file raised, raised here
            if got.data is not None:
                return self._submit_small_file(got.data, got.opened, fh, backpointers, name, where)
            fd, opened = got.fd, got.opened
        else:
            fd, opened = self.reads.call("open", path, open_for_reading, path)
        try:
            if ahead is None and opened.st_size < FIRST_SEGMENT_BYTES:
                stored = self._store_small_file(fd, opened, fh, backpointers, name, where)
                if stored is not None:
                    return stored
            # reads run ahead in parallel preads; closed (its reads over) before the descriptor
            stream = AheadReader(self.reads, fd, opened.st_size, path=path)
            try:
                return self._store_file_stream(fd, stream, fh, backpointers, name, where)
            finally:
                stream.close()
        finally:
            os.close(fd)

    def _store_small_file(self, fd, opened, fh, backpointers, name, where):
        """A file that fits its inode (§9.1): one read, no segment; None to take the general path.

        The content is whole when one read returned exactly the size fstat gave
        before it and a second fstat shows the file unchanged (same inode,
        size, mtime and ctime). Anything else (a file growing, shrinking or
        being written) goes to :meth:`_store_file_stream`, which retries.
        """
        reads = self.reads
        data = reads.call("read", self._path, os.read, fd, FIRST_SEGMENT_BYTES)
        if len(data) != opened.st_size:
            return None
        if not same_content(opened, reads.call("fstat", self._path, os.fstat, fd)):
            return None
        return self._submit_small_file(data, opened, fh, backpointers, name, where)

    def _submit_small_file(self, data, opened, fh, backpointers, name, where):
        """Submit the inode of a small file read whole (the torn-read rule checked)."""
        attrs = self.attrs(opened, len(data), len(backpointers))
        future = self.uploader.submit(small_file_blob(data, attrs, fh, backpointers, name, where))
        crashpoints.reached("inode")
        return [future], len(data)

    def _store_file_stream(self, fd, stream, fh, backpointers, name, where) -> Tuple[List["Future[None]"], int]:
        """Store a file of any size, segment by segment; read again if it changed meanwhile."""
        for _attempt in range(READ_ATTEMPTS):
            stream.seek(0)
            before = EntryStat.of(self.reads.call("fstat", self._path, os.fstat, fd))
            attrs = self.attrs(before, 0, len(backpointers))
            reader = HashingReader(stream, new_hasher())
            gen = file_blobs(reader, attrs, fh, backpointers, name, where, ids=self.mint.block_ids(fh),
                             compress=self.uploader.compress)
            futures: List["Future[None]"] = []
            inode: Optional[Union[Blob, Sealed]] = None  # the last blob: the inode, once the segments are out
            while True:
                try:
                    blob = next(gen)
                except StopIteration as done:
                    size = done.value.size
                    break
                if inode is not None:
                    futures.append(self.uploader.submit(inode))
                    crashpoints.reached("file-segment")
                inode = blob
            after = EntryStat.of(self.reads.call("fstat", self._path, os.fstat, fd))
            if before.same_content(after) and size == after.st_size:
                # The inode goes last, once every segment is stored (FMT §11.5).
                error = first_error(futures)
                if error is not None:
                    f: "Future[None]" = Future()
                    f.set_exception(error)
                    return [f], size
                assert inode is not None
                future = self.uploader.submit(inode)
                crashpoints.reached("inode")
                if size > FIRST_SEGMENT_BYTES:  # smaller files are whole in their inode: verify reads them
                    self._checksums.append((fh, reader.hasher.digest()))
                return [future], size
            first_error(futures)  # let this attempt's PUTs land before the next overwrites them
            self._dirty = True  # the next attempt may write fewer segments
        raise SourceError(torn_read())

    # --- RECONCILE -----------------------------------------------------------

    def store_linked(self, task: LinkTask) -> Union[Problem, LinkDone]:
        """Store a hard-linked object once, with its final nlink and backpointers (FMT §13)."""
        self._checksums = []
        st = EntryStat.unpack(task.stat)
        ftype = ftype_of_mode(st.st_mode)
        where = InodeName(task.backpointers[0], RECONCILED_VERSION)
        try:
            futures, _ = self.store_object(task.path, st, ftype, task.fh, list(task.backpointers), task.name, where)
        except SourceError as exc:
            return Problem(task.path, str(exc))
        error = first_error(futures)
        if isinstance(error, TerminalError):
            raise error
        if error is not None:
            return Problem(task.path, store_failure(error))
        crashpoints.reached("link")
        return LinkDone(self._checksums)


def _check_same_directory(path: bytes, scanned: EntryStat, now: EntryStat) -> None:
    """The directory a unit loads is the one its parent's scan found (same device and inode).

    Otherwise the source was replaced under the run (a tree moved away and
    another put in its place): loading it would mix two trees.
    """
    if not stat.S_ISDIR(now.st_mode):
        raise UnitFailed(Problem(path, "is no longer a directory (replaced since it was found); not loaded"))
    if (scanned.st_dev, scanned.st_ino) != (now.st_dev, now.st_ino):
        raise UnitFailed(
            Problem(path, "was replaced by another directory since it was found (device/inode changed); not loaded")
        )
