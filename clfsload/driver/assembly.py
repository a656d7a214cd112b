"""TRANSFER's outcomes, and the directories whose parts ran as units of their own.

A directory unit usually stores its directory itself. A huge directory
(its entries go out in :class:`~clfsload.work.units.EntryBatch` units) and
a directory with huge files (each loaded in :class:`~clfsload.work.units.FileRange`
units) come back split instead: :class:`Assembly` queues their parts, merges
what each part returns into the directory's result, stores each huge file's
inode once all its ranges are back (or plans it again, or leaves it out),
and stores the directory once every part is back. Until then the
directory's unit stays pending in the state, so a run stopped meanwhile
redoes it whole (ranges already stored by an earlier run stand).
"""

import collections
import logging
import os
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Optional, Union

from ..work.ids import IdMint
from ..work.reasons import VANISHED
from ..work.scan import EntryStat, Problem
from ..work.units import (
    DeferredDir,
    DirResult,
    DirTask,
    DirWrite,
    EntryBatch,
    FileRange,
    HugeFile,
    LinkDone,
    LinkTask,
    RangeDone,
    RunParams,
    Unit,
    UnitFailed,
)
from . import handles
from .recording import Recorder

if TYPE_CHECKING:  # loaded where a directory comes back split (most runs have none): see _start_file, _part_back
    from ..work.directories import DirectoryWriter
    from ..work.ranges import FileAssembly

log = logging.getLogger("clfsload")


class _SplitProgress:
    """A directory whose parts are out (batches, huge files): its task, the merged result so far, parts left."""

    def __init__(self, task: DirTask, result: DirResult):
        self.task = task
        self.result = result
        split = result.split
        assert split is not None
        self.left = len(split.batches) + len(split.files)


class Assembly:
    """Records the outcomes of units (:class:`~clfsload.work.units.Records`), assembling split directories.

    ``extra`` holds the parts made while other units ran (batches, ranges):
    the drain loop runs them first.
    """

    def __init__(self, recorder: Recorder, params: RunParams, mint: IdMint, writer: "Callable[[], DirectoryWriter]"):
        self.recorder = recorder
        self.state = recorder.state
        self.progress = recorder.progress
        self.params = params
        self.mint = mint
        self._writer = writer  # stores split directories and ranged files' inodes through the driver's target
        self.extra: Deque[Unit] = collections.deque()
        self._splits: Dict[int, _SplitProgress] = {}  # directories whose parts are out, by unit
        self._files: "Dict[bytes, FileAssembly]" = {}  # huge files whose ranges are out, by fh

    # --- what each unit's record() calls ------------------------------------------

    def record_unit(self, task: DirTask, outcome: Union[DirResult, Problem]) -> int:
        """A directory unit is back: complete it, or (split) queue its parts."""
        if isinstance(outcome, DirResult):
            if handles.name_subdirs(self.state, self.mint, task, outcome) and self.recorder.note_once("dir-nlink"):
                log.info("%s: has more subdirectories than its link count says; the driver names them, and such "
                         "directories are stored after their unit", os.fsdecode(task.path))
            if outcome.split is not None:
                return self._start(task, outcome)
        return self.recorder.complete_unit(task, outcome)

    def record_batch(self, batch: EntryBatch, outcome: Union[DirResult, Problem]) -> int:
        """A batch of a huge directory is back: merge it into the directory's result."""
        merged = self._splits[batch.unit].result
        if isinstance(outcome, DirResult):
            for name in ("links", "problems", "notes", "checksums", "children"):
                getattr(merged, name).extend(getattr(outcome, name))
            merged.objects += outcome.objects
            merged.source_bytes += outcome.source_bytes
            merged.dirty = merged.dirty or outcome.dirty
            errors = len(outcome.problems)
            self.progress.count(outcome.objects, outcome.source_bytes)
        else:  # the whole batch failed (its workers died): its entries are left out
            merged.problems.append(outcome)
            errors = 1
        return errors + self._part_back(batch.unit)

    def record_range(self, task: FileRange, outcome: Any) -> int:
        """One range of a huge file is back; once all are, store the file (or plan it again)."""
        assembly = self._files[task.fh]
        if isinstance(outcome, RangeDone) and not outcome.changed:
            self.progress.count(0, outcome.nbytes)
            self.state.record_range(task.unit, task.fh, task.first, task.last, outcome.stat.pack(), outcome.head,
                                    outcome.digest, outcome.nbytes)
            self.recorder.commit()  # a range is up to 1 GiB of work: a resumed run must not redo it
        if not assembly.add(task, outcome):
            return 0
        return self._settle_file(assembly)

    def record_dir_write(self, task: DirWrite, outcome: Optional[Problem]) -> int:
        """A deferred directory is stored (:meth:`Recorder.record_dir_write`)."""
        return self.recorder.record_dir_write(task, outcome)

    def record_link(self, task: LinkTask, outcome: Union[Problem, LinkDone]) -> int:
        """A hard-linked object is stored (:meth:`Recorder.record_link`)."""
        return self.recorder.record_link(task, outcome)

    # --- split directories ------------------------------------------------------------

    def _start(self, task: DirTask, outcome: DirResult) -> int:
        """Queue the parts of a split directory; it completes (and is stored) once all are back."""
        split = outcome.split
        assert split is not None
        self._splits[task.unit] = _SplitProgress(task, outcome)
        self.progress.count(outcome.objects, outcome.source_bytes)  # the entries the unit stored itself
        self.extra.extend(split.batches)
        if split.batches:
            log.info("%s: %d entries, loaded in %d batches", os.fsdecode(task.path),
                     sum(len(b.entries) for b in split.batches), len(split.batches))
        errors = len(outcome.problems)
        for huge in split.files:
            errors += self._start_file(huge)
        return errors

    def _start_file(self, huge: HugeFile) -> int:
        """Queue the ranges of a huge file still to load (those an earlier run stored stand); returns errors."""
        from ..work.ranges import FileAssembly, range_size

        # the file's own range size, from its size (the worker that split it off used the same rule)
        per_range = range_size(huge.stat.st_size, self.params.range_segments) or self.params.range_segments
        stored = [(last, RangeDone(first, EntryStat.unpack(st), head, digest, nbytes))
                  for first, last, st, head, digest, nbytes in self.state.stored_ranges(huge.fh)]
        assembly = self._files[huge.fh] = FileAssembly(huge, per_range, stored)
        tasks = assembly.tasks()
        log.info("%s: %d bytes, loaded in %d ranges of up to %d segments%s", os.fsdecode(huge.path),
                 huge.stat.st_size, len(assembly.ranges), per_range,
                 "" if len(tasks) == len(assembly.ranges) else
                 " (%d stored by an earlier run)" % (len(assembly.ranges) - len(tasks)))
        if tasks:
            self.extra.extend(tasks)
            return 0
        return self._settle_file(assembly)

    def _settle_file(self, assembly: "FileAssembly") -> int:
        """Every range of a huge file is back: store its inode, plan it again, or leave it out. Returns errors."""
        huge = assembly.huge
        merged = self._splits[huge.unit].result
        verdict = assembly.verdict()
        if verdict == "again":  # changed while read: its next attempt may write fewer segments
            merged.dirty = True
            self.extra.extend(assembly.tasks())
            return 0
        del self._files[huge.fh]
        errors = 0
        if verdict == "store":
            try:
                self._writer().store_ranged_file(assembly)
            except UnitFailed as exc:
                verdict = exc.problem
            else:
                merged.children.append((huge.pos, huge.name, huge.fh))
                merged.objects += 1
                merged.source_bytes += assembly.stat.st_size
                self.recorder.checksum_log().add_ranged(*assembly.checksum())
                self.progress.count(1, 0)
        if verdict == "vanished":
            merged.notes.append(("", Problem(huge.path, VANISHED).line()))
        elif isinstance(verdict, Problem):
            merged.problems.append(verdict)
            errors = 1
        if assembly.attempt > 1 or verdict != "store":
            merged.dirty = True  # segments of an attempt or of a file left out may remain: the sweep finds them
        self.state.forget_ranges(huge.fh)
        return errors + self._part_back(huge.unit)

    def _part_back(self, unit: int) -> int:
        """One part of a split directory is done; store the directory once all are. Returns new errors."""
        progress = self._splits[unit]
        progress.left -= 1
        if progress.left:
            return 0
        del self._splits[unit]
        merged = progress.result
        split, merged.split = merged.split, None
        assert split is not None
        try:
            writer = self._writer()
            if merged.links:  # stored before RECONCILE, once its linked objects' handles are settled
                writer.check_directory_attrs(progress.task, EntryStat.unpack(split.stat))
                from ..work.directories import split_listing

                merged.deferred = DeferredDir(split.stat, split_listing(split, merged.children), split.subdir_count)
            else:
                writer.store_split_directory(progress.task, split, merged.children)
        except UnitFailed as exc:
            self.state.fail_unit(unit, exc.problem)
            log.error("%s", exc.problem.line())
            return 1
        merged.children = []
        self.recorder.complete_unit(progress.task, merged, counted=True)
        return 0


__all__ = ["Assembly"]
