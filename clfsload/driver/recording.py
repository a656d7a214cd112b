"""Recording what units did: the state store, the checksum log and the progress, and the loop that drains a phase.

The driver is the one writer of the state. :class:`Recorder` writes a
directory's result, a hard-linked object's, a deferred directory's, and
what a unit that ran twice leaves to the sweep; :func:`drain` keeps a pool
fed with a phase's pending units and hands each outcome back to the unit,
which says how it is recorded (:meth:`clfsload.work.units.DirTask.record`).
"""

import logging
import os
import time
from concurrent.futures import FIRST_COMPLETED, wait
from typing import Any, Callable, Deque, Iterable, Optional, Set, Tuple, Union

from ..execute.base import Pool
from ..settings import Settings
from ..work.checksum_log import ChecksumLog
from ..work.scan import Problem
from ..work.units import DirResult, DirTask, DirWrite, LinkDone, LinkTask, Records, Unit
from .progress import Progress
from .result import Interrupted, LoadError
from .state import SWEEP_DIR, SWEEP_OBJECT, StateStore

log = logging.getLogger("clfsload")

COMMIT_EVERY = 200  # results per state transaction
COMMIT_SECONDS = 1.0

#: ``fetch(cursor, n)``: up to ``n`` pending units after ``cursor``, each with its cursor key
Fetch = Callable[[Any, int], Iterable[Tuple[Any, Unit]]]


class Recorder:
    """Writes units' outcomes to the state store, the checksum log and the progress counters."""

    def __init__(self, settings: Settings, state: StateStore, progress: Progress):
        self.settings = settings
        self.state = state
        self.progress = progress
        self._noted: Set[str] = set()  # keys of the warnings logged once per run
        self._checksums: Optional[ChecksumLog] = None  # content checksums, appended as units finish

    def note_once(self, key: str) -> bool:
        """True the first time ``key`` is noted in this run (its warning is logged once)."""
        if key in self._noted:
            return False
        self._noted.add(key)
        return True

    def complete_unit(self, task: DirTask, outcome: Union[DirResult, Problem], counted: bool = False) -> int:
        """Record a unit's outcome; returns its errors. ``counted``: its entries' objects
        and problems were counted as its batches came back."""
        state = self.state
        if isinstance(outcome, DirResult):
            state.complete_unit(outcome)
            self.checksum_log().add(outcome.checksums)
            for key, line in outcome.notes:
                if not key or self.note_once(key):
                    log.warning("%s", line)
            for problem in outcome.problems:
                log.error("%s", problem.line())
            if counted:
                self.progress.count(1, 0)
                return 0
            self.progress.count(outcome.objects + 1, outcome.source_bytes)
            return len(outcome.problems)
        state.fail_unit(task.unit, outcome)
        log.error("%s", outcome.line())
        return 1

    def record_link(self, task: LinkTask, outcome: Union[Problem, LinkDone]) -> int:
        """A hard-linked object is stored, or could not be (RECONCILE)."""
        if isinstance(outcome, Problem):
            self.state.complete_link(task.key, outcome)
            log.error("%s", outcome.line())
            return 1
        self.state.complete_link(task.key, None)
        self.checksum_log().add(outcome.checksums)
        self.progress.count(1, 0)
        return 0

    def record_dir_write(self, task: DirWrite, outcome: Optional[Problem]) -> int:
        """A deferred directory is stored; one that could not be stops the run (a rerun stores it)."""
        if outcome is not None:
            raise LoadError("%s; run the same command again to resume" % outcome.line())
        self.state.complete_deferred_dir(task.task.fh)
        return 0

    def mark_repeated(self, task: Unit) -> None:
        """A unit that may have run twice (its Dask worker was lost): sweep what it owns in FINALIZE."""
        sweep = task.repeat_sweep()
        if sweep is None:
            return  # both attempts wrote the same blobs
        self.state.add_sweep(sweep.fh, SWEEP_DIR if sweep.directory else SWEEP_OBJECT)
        log.info("%s: its worker was lost while it ran; it ran again, and FINALIZE sweeps what the lost "
                 "attempt left", os.fsdecode(task.path))

    def commit(self) -> None:
        """Commit the state, the checksum records of the units it makes done first."""
        self.flush_checksums()
        self.state.commit()

    def flush_checksums(self) -> None:
        """Make the checksum records added so far durable (before a commit records their units done)."""
        if self._checksums is not None:
            self._checksums.flush()

    def checksum_log(self) -> ChecksumLog:
        """The run's content checksum log (opened on first use)."""
        if self._checksums is None:
            self._checksums = ChecksumLog(self.settings.state_dir)
        return self._checksums

    def close(self) -> None:
        """Write out the checksum log (OSError if it cannot be)."""
        if self._checksums is not None:
            self._checksums.close()


def drain(pool: Pool, records: Records, recorder: Recorder, fetch: Fetch, extra: Deque[Unit]) -> None:
    """Run every pending unit ``fetch`` gives (and those queued in ``extra`` meanwhile) within the error budget.

    Each outcome goes back to its unit's :meth:`record` on ``records``.
    Raises LoadError when the phase stops at ``--max_errors``, Interrupted on Ctrl-C.
    """
    state, progress, s = recorder.state, recorder.progress, recorder.settings
    in_flight = {}
    cursor = None
    errors = 0
    last_commit = time.monotonic()
    stopping = False
    try:
        while True:
            if not stopping:
                cursor = _feed(pool, recorder, fetch, extra, in_flight, cursor)
            if not in_flight:
                break
            done, _ = wait(in_flight, timeout=progress.seconds_to_next(), return_when=FIRST_COMPLETED)
            for future in done:
                task = in_flight.pop(future)
                outcome = future.result()
                if pool.repeated(future):
                    recorder.mark_repeated(task)
                errors += task.record(records, outcome)
            if errors and s.max_errors and errors >= s.max_errors and not stopping:
                stopping = True
                log.error("phase aborting work because the error limit is reached (%d >= %d)", errors, s.max_errors)
            now = time.monotonic()
            if state.batch_size >= COMMIT_EVERY or now - last_commit >= COMMIT_SECONDS:
                recorder.commit()
                last_commit = now
            progress.tick()
    except KeyboardInterrupt:
        state.commit()
        pool.shutdown(cancel=True)
        raise Interrupted("interrupted; the state is saved: run the same command without --new to resume") from None
    except BaseException:
        state.commit()
        pool.shutdown(cancel=True)
        raise
    state.commit()
    pool.shutdown()
    progress.tick(force=True)
    if stopping:
        raise LoadError("phase aborted, error count %d >= max %d; fix the causes and run again to resume" % (errors, s.max_errors))


def _feed(pool: Pool, recorder: Recorder, fetch: Fetch, extra: Deque[Unit], in_flight: dict, cursor: Any) -> Any:
    """Fill the pool up to its capacity: units queued in ``extra`` first, then pending ones after ``cursor``.

    ``fetch`` gives committed units only (a unit runs once the row that
    schedules it is durable: :meth:`clfsload.driver.state.StateStore.pending_units`).
    The state is committed here only when the pool would otherwise wait
    for units the open batch schedules; else commits follow the drain's
    COMMIT_EVERY / COMMIT_SECONDS rule. Returns the cursor of the last unit fetched.
    """
    while extra and len(in_flight) < pool.capacity:
        task = extra.popleft()
        in_flight[pool.submit(task)] = task
    room = pool.capacity - len(in_flight)
    if room > 0:
        cursor = _fetch_into(pool, fetch, in_flight, cursor, room)
        room = pool.capacity - len(in_flight)
        if room > 0 and recorder.state.units_to_commit:
            recorder.commit()  # the units the batch schedules become durable, and so available
            cursor = _fetch_into(pool, fetch, in_flight, cursor, room)
    flush = getattr(pool, "flush", None)  # a pool that holds submissions to send them together
    if flush is not None:
        flush()
    return cursor


def _fetch_into(pool: Pool, fetch: Fetch, in_flight: dict, cursor: Any, room: int) -> Any:
    """Submit up to ``room`` pending units after ``cursor``; returns the cursor of the last one."""
    for key, task in fetch(cursor, room):
        in_flight[pool.submit(task)] = task
        cursor = key
    return cursor
