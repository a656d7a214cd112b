"""The units of a load and what they return: the data the driver, the pools and the state store share.

A unit is a picklable value sent to a pool process or a Dask task:
:class:`DirTask` (one directory), :class:`EntryBatch` (a slice of a huge
directory), :class:`FileRange` (segments of a huge file), :class:`DirWrite`
(a deferred directory, RECONCILE) and :class:`LinkTask` (a hard-linked
object, RECONCILE). Each says itself how it runs (:meth:`DirTask.run` on a
:class:`Runs`), how the driver records its outcome (:meth:`DirTask.record`
on a :class:`Records`), its Dask key (:meth:`DirTask.dask_key`) and what the sweep
checks if it may have run twice (:meth:`DirTask.repeat_sweep`): one dispatch,
no ``isinstance`` chain in the executors or the driver.

This module holds data only; the code that runs a unit is
:class:`clfsload.work.transfer.UnitRunner`.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, NamedTuple, Optional, Protocol, Tuple, Union

from ..errors import ClfsLoadError
from .scan import EntryStat, Problem

#: a directory with more non-directory entries than this is loaded in batches of this many
BATCH_ENTRIES = 10000


#: data segments per range (1 GiB); a file with more segments is loaded in ranges (:mod:`clfsload.work.ranges`)
RANGE_SEGMENTS = 128


class Runs(Protocol):
    """What runs a unit (:class:`clfsload.work.transfer.UnitRunner`), as the units call it."""

    def run(self, task: "DirTask") -> "DirResult":
        """Load one directory; raises UnitFailed or TerminalError."""

    def run_batch(self, batch: "EntryBatch") -> "DirResult":
        """Store one batch of a huge directory's entries."""

    def store_range(self, task: "FileRange") -> "RangeOutcome":
        """Read and store one range of a huge file."""

    def write_directory(self, write: "DirWrite") -> Optional[Problem]:
        """Store a deferred directory; its Problem if it could not be stored."""

    def store_linked(self, task: "LinkTask") -> Union[Problem, "LinkDone"]:
        """Store a hard-linked object once, with all its backpointers."""


class Records(Protocol):
    """What records a unit's outcome in the state (the driver); each returns the errors it counts."""

    def record_unit(self, task: "DirTask", outcome: Any) -> int:
        """A directory unit is back (its DirResult, or the Problem that failed it)."""

    def record_batch(self, batch: "EntryBatch", outcome: Any) -> int:
        """A batch of a huge directory is back."""

    def record_range(self, task: "FileRange", outcome: Any) -> int:
        """A range of a huge file is back."""

    def record_dir_write(self, task: "DirWrite", outcome: Optional[Problem]) -> int:
        """A deferred directory is stored (None) or could not be."""

    def record_link(self, task: "LinkTask", outcome: Any) -> int:
        """A hard-linked object is stored (LinkDone) or could not be."""


class RepeatSweep(NamedTuple):
    """What the sweep checks after a unit may have run twice: a directory's blobs, or one object's."""

    fh: bytes
    directory: bool


class UnitFailed(ClfsLoadError):
    """The directory itself could not be loaded; ``problem`` says which path and why."""

    def __init__(self, problem: Problem):
        super().__init__(problem.line())
        self.problem = problem


@dataclass(frozen=True)
class HugeFile:
    """A regular file of a directory unit, to be loaded in ranges; ``stat`` is the directory scan's."""

    unit: int
    pos: int  # its place in the directory's scan order
    name: bytes
    path: bytes
    fh: bytes
    parent_fh: bytes
    stat: EntryStat


@dataclass(frozen=True)
class FileRange:
    """Data segments ``first``..``last`` (1-based block indexes) of one huge file: a unit of work.

    The first range also reads the file's first 16 KiB (the inode's DATA).
    ``stat`` is the one the ranges were planned on: a range that finds the
    file different reports it changed and stores nothing.
    """

    unit: int  # the directory unit the file belongs to
    fh: bytes
    parent_fh: bytes
    path: bytes
    stat: EntryStat
    first: int
    last: int
    attempt: int

    def run(self, runner: Runs) -> "RangeOutcome":
        """Read and store this range (in a pool process or a Dask task)."""
        return runner.store_range(self)

    def record(self, recorder: Records, outcome: Any) -> int:
        """Record its outcome (the driver); returns the errors it adds."""
        return recorder.record_range(self, outcome)

    def dask_key(self) -> str:
        """Its name in a Dask key."""
        return "dir-%d-file-%s-seg%d" % (self.unit, self.fh[-8:].hex(), self.first)

    def repeat_sweep(self) -> Optional[RepeatSweep]:
        """Its directory's sweep checks the file's segments."""
        return RepeatSweep(self.parent_fh, True)


class RangeDone(NamedTuple):
    """What a range read and stored."""

    first: int
    #: the file's fstat before reading (after it, when ``changed`` found it different)
    stat: EntryStat
    #: the first FIRST_SEGMENT_BYTES of the file (first range only)
    head: bytes
    #: XXH3-128 of the bytes this range read, head included
    digest: bytes
    nbytes: int
    #: the file differs from the planned stat, before or while reading: nothing usable was stored
    changed: bool = False


class RangeVanished(NamedTuple):
    """The file is gone since its directory was scanned."""

    path: bytes


@dataclass(frozen=True)
class RunParams:
    """What every unit of one run shares."""

    containerid: int
    fsid: int
    secret: bytes
    compress: bool
    preserve_hardlinks: bool
    #: non-directory entries per batch of a huge directory (0: never split)
    batch_entries: int = BATCH_ENTRIES
    #: data segments per range of a huge regular file (0: never split; :mod:`clfsload.work.ranges`)
    range_segments: int = RANGE_SEGMENTS
    #: source operations in flight in this process (0: the default; :mod:`clfsload.work.source_reads`)
    source_concurrency: int = 0
    #: bytes read ahead of the consumer in this process (0: the default)
    source_budget: int = 0
    #: seconds before an outstanding source operation is reported stuck (0: the default)
    source_timeout: float = 0
    #: SOURCE answered slowly when probed at the start (:func:`clfsload.execute.pool.source_is_slow`):
    #: big files' data is read ahead from the first read (:attr:`clfsload.work.source_reads.SourceReads.read_eagerly`)
    source_slow: bool = False


@dataclass(frozen=True)
class DirTask:
    """One directory to load. ``stat`` is the parent's scan of it (None: lstat it here, for the root)."""

    unit: int
    path: bytes
    fh: bytes
    parent_fh: bytes
    name: bytes
    stat: Optional[bytes] = None
    #: on a retry, the subdirectories an earlier attempt already made units, with
    #: their fhs: they keep those fhs and are not scheduled again
    known_subdirs: Optional[Dict[bytes, bytes]] = None
    #: the run-wide directory counter values ``dmid_base + 1 .. dmid_base + dmid_count``
    #: are reserved for this directory's subdirectories (FMT §2.2: a directory's
    #: ``dmid_tgt`` is its counter value mod 48). The driver reserves
    #: ``st_nlink - 2`` when it makes the unit; subdirectories past the
    #: reservation (a source whose link counts do not count subdirectories) get
    #: their handles from the driver, and the directory is stored by the driver.
    dmid_base: int = 0
    dmid_count: int = 0
    #: directories may share a Dask task (:class:`clfsload.execute.dask_driver.DaskUnitPool`):
    #: they are many and alike; every other unit kind goes alone (a range reads up to 1 GiB)
    bundled: ClassVar[bool] = True

    def run(self, runner: Runs) -> Union["DirResult", Problem]:
        """Load the directory; one that fails outright comes back as its Problem (TerminalError propagates)."""
        try:
            return runner.run(self)
        except UnitFailed as exc:
            return exc.problem

    def record(self, recorder: Records, outcome: Any) -> int:
        """Record its outcome (the driver); returns the errors it adds."""
        return recorder.record_unit(self, outcome)

    def dask_key(self) -> str:
        """Its name in a Dask key."""
        return "dir-%d" % self.unit

    def repeat_sweep(self) -> Optional[RepeatSweep]:
        """The sweep checks the directory's blobs."""
        return RepeatSweep(self.fh, True)


class BatchEntry(NamedTuple):
    """One non-directory of a batch: where it is, what it is, and its place in the directory."""

    pos: int  # index in the directory's scan order (its place in the stored listing)
    name: bytes
    path: bytes
    stat: EntryStat
    ftype: int
    seq: int  # its sequence number, from its rank among the directory's names


@dataclass(frozen=True)
class EntryBatch:
    """A slice of one huge directory's non-directories, loaded as a unit of its own.

    The directory's own unit scanned it and numbered every entry, so a batch
    needs nobody: it stores its entries under the directory's ``fh`` and
    returns the ``(pos, name, fh)`` of those stored. The driver stores the
    directory once every batch is back (:class:`SplitDir`).
    """

    unit: int
    index: int
    fh: bytes
    path: bytes
    entries: Tuple[BatchEntry, ...]

    def run(self, runner: Runs) -> "DirResult":
        """Store the batch's entries."""
        return runner.run_batch(self)

    def record(self, recorder: Records, outcome: Any) -> int:
        """Record its outcome (the driver); returns the errors it adds."""
        return recorder.record_batch(self, outcome)

    def dask_key(self) -> str:
        """Its name in a Dask key."""
        return "dir-%d-batch%d" % (self.unit, self.index)

    def repeat_sweep(self) -> Optional[RepeatSweep]:
        """The sweep checks its directory's blobs."""
        return RepeatSweep(self.fh, True)


@dataclass
class SplitDir:
    """A directory whose entries went out as units of their own: what the driver needs to store it at the end.

    Its non-directories are in ``batches`` (a huge directory), or some were
    stored by the directory's unit (their ``(pos, name, fh)`` are in the
    result's ``children``) and its huge regular files go out in ranges.
    """

    stat: bytes  # the directory's EntryStat.pack(), taken just before its listing
    batches: List[EntryBatch]
    #: (pos, name, fh) of its subdirectories, which store nothing in this unit
    subdirs: List[Tuple[int, bytes, bytes]]
    subdir_count: int
    #: regular files loaded in ranges of segments (:mod:`clfsload.work.ranges`)
    files: List[HugeFile] = field(default_factory=list)


class SubDir(NamedTuple):
    """A subdirectory found by a scan; the driver makes it a unit.

    ``fh`` is empty when the unit's reservation of directory counter values
    ran out: the driver mints it from ``seq`` (see :attr:`DirTask.dmid_base`).
    """

    name: bytes
    path: bytes
    fh: bytes
    stat: bytes
    seq: int = 0


@dataclass
class DeferredDir:
    """A directory the worker did not store: the driver stores it once every handle it lists is settled.

    That is a directory listing hard-linked objects (their handles take the
    ``dmid`` of their first backpointer, known once every directory has been
    scanned), or subdirectories whose handles the driver mints. ``children``
    are ``(name, fh)`` in listing order; a hard-linked child carries its key
    (:meth:`clfsload.work.ids.IdMint.linked_fh`), a subdirectory still to be
    minted an empty fh.
    """

    stat: bytes  # the directory's EntryStat.pack(), taken just before its listing
    children: List[Tuple[bytes, bytes]]
    subdir_count: int


class LinkRef(NamedTuple):
    """One path of a hard-linked non-directory (``--preserve_hardlinks 1``)."""

    fh: bytes
    parent_fh: bytes
    name: bytes
    path: bytes
    stat: bytes


@dataclass
class DirResult:
    """What a unit found and did."""

    unit: int
    subdirs: List[SubDir] = field(default_factory=list)
    #: on a retry, the already loaded subdirectories listed again (name -> fh)
    kept_subdirs: Dict[bytes, bytes] = field(default_factory=dict)
    links: List[LinkRef] = field(default_factory=list)
    problems: List[Problem] = field(default_factory=list)
    #: warnings, not errors: (key, line); the driver logs each key once
    notes: List[Tuple[str, str]] = field(default_factory=list)
    #: the directory itself is gone since its parent listed it
    vanished: bool = False
    objects: int = 0
    source_bytes: int = 0
    #: some object was written twice with different content (a file read
    #: again): the sweep must look for what the first write left behind
    dirty: bool = False
    #: (fh, XXH3-128 of the content stored) per regular file (clfsload.work.checksum_log)
    checksums: List[Tuple[bytes, bytes]] = field(default_factory=list)
    #: a huge directory: its entries are to be loaded in these batches, then the directory stored
    split: Optional[SplitDir] = None
    #: from an EntryBatch: the (pos, name, fh) of the entries it stored
    children: List[Tuple[int, bytes, bytes]] = field(default_factory=list)
    #: the directory is to be stored by the driver, later (:class:`DeferredDir`)
    deferred: Optional[DeferredDir] = None


@dataclass(frozen=True)
class DirWrite:
    """A deferred directory to store, its listing's handles settled (RECONCILE, before the linked objects).

    ``task`` names the directory (its fh, parent fh, name, path); ``children``
    are ``(name, fh)`` in listing order. Storing it twice writes the same blobs.
    """

    task: DirTask
    stat: bytes
    children: Tuple[Tuple[bytes, bytes], ...]
    subdir_count: int

    @property
    def path(self) -> bytes:
        """The directory's source path."""
        return self.task.path

    def run(self, runner: Runs) -> Optional[Problem]:
        """Store the directory; its Problem if it could not be stored."""
        return runner.write_directory(self)

    def record(self, recorder: Records, outcome: Optional[Problem]) -> int:
        """Record its outcome (the driver)."""
        return recorder.record_dir_write(self, outcome)

    def dask_key(self) -> str:
        """Its name in a Dask key."""
        return "dirwrite-%s" % self.task.fh[-8:].hex()

    def repeat_sweep(self) -> Optional[RepeatSweep]:
        """Nothing: both attempts wrote the same blobs."""
        return None


class LinkDone(NamedTuple):
    """A hard-linked object stored in RECONCILE, with its content checksum (if a regular file)."""

    checksums: List[Tuple[bytes, bytes]]


@dataclass(frozen=True)
class LinkTask:
    """A hard-linked non-directory to store once, with all its backpointers (RECONCILE).

    ``fh`` is its settled handle; ``key`` the handle-shaped key its links were
    recorded under in TRANSFER (:meth:`clfsload.work.ids.IdMint.linked_fh`).
    """

    fh: bytes
    path: bytes
    name: bytes
    stat: bytes
    backpointers: Tuple[bytes, ...]
    key: bytes = b""

    def run(self, runner: Runs) -> Union[Problem, "LinkDone"]:
        """Store the object once, with all its backpointers."""
        return runner.store_linked(self)

    def record(self, recorder: Records, outcome: Any) -> int:
        """Record its outcome (the driver); returns the errors it adds."""
        return recorder.record_link(self, outcome)

    def dask_key(self) -> str:
        """Its name in a Dask key."""
        return "link"

    def repeat_sweep(self) -> Optional[RepeatSweep]:
        """The sweep checks the object's blobs."""
        return RepeatSweep(self.fh, False)


RangeOutcome = Union[RangeDone, RangeVanished, Problem]

#: every kind of unit a pool runs
Unit = Union[DirTask, EntryBatch, FileRange, LinkTask, DirWrite]
#: what a unit returns
Outcome = Union[DirResult, Problem, LinkDone, RangeDone, RangeVanished, None]

__all__ = [
    "BATCH_ENTRIES",
    "RANGE_SEGMENTS",
    "BatchEntry",
    "DeferredDir",
    "DirResult",
    "DirTask",
    "DirWrite",
    "EntryBatch",
    "FileRange",
    "HugeFile",
    "LinkDone",
    "LinkRef",
    "LinkTask",
    "Outcome",
    "RangeDone",
    "RangeOutcome",
    "RangeVanished",
    "Records",
    "RepeatSweep",
    "RunParams",
    "Runs",
    "SplitDir",
    "SubDir",
    "Unit",
    "UnitFailed",
]
