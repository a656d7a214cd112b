"""The worker side of a load on Dask: what runs inside each Dask worker process.

A run reaches a Dask worker in two ways:

* :func:`join`, called by the driver *directly* on the worker (a Dask RPC to
  the worker's own address, never through the scheduler), hands it the
  run's :class:`~clfsload.execute.pool.WorkerConfig`, credential included, and has
  it check that it sees SOURCE as the driver does (:class:`SourceCheck`). The scheduler therefore
  never holds the credential: not in a task, not in a plugin, not in its
  logs or dashboard.
* :func:`run_units`, submitted through the scheduler as an ordinary task,
  carries only a run token and a few units (:data:`clfsload.work.units.Unit`: a
  directory, a batch of a huge directory's entries, a range of a huge file's
  segments or a hard-linked object; paths, filehandles, unit numbers), run
  here several at once where they wait on the network (else one after
  another), on the worker process's one uploader for the run: one Dask task
  for several small units spares the scheduler, the driver and this worker
  a task's overhead per unit. Each
  unit's outcome (or what it raised, as :class:`UnitFailed`) comes back on
  its own. A worker that has not joined (it started after the run began, or
  was restarted after a crash) raises :class:`NotJoined`; the driver then
  joins it and submits the units again.

The config carries the driver's run-time switches
(:class:`clfsload.settings.Switches`). A Dask worker runs in a process of its
own, started with an environment of its own, and it used to read the
worker-side switches (``CLFSLOAD_MAX_IN_FLIGHT``, ``CLFSLOAD_NO_UVLOOP``,
``CLFSLOAD_NO_PACING``, ``CLFSLOAD_TEST_RETRY``) there, e.g. from
``LocalCluster(env=...)``: it still does, at :func:`join` (the worker's own
edge), and a variable set there wins over the driver's value.

A driver killed and started again joins the workers under a new token. Each
worker first waits for the units of the earlier run of the same transfer
that are still running on it (a thread cannot be stopped), so no unit of
the dead run writes after the new run has looked at the container.
"""

import asyncio
import dataclasses
import hashlib
import itertools
import os
import stat
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .pool import WorkerConfig, open_uploader, unit_threads, with_source_judged, with_unit_threads
from ..settings import Switches
from ..targets.endpoint import LocalFolder, parse_account
from ..work.protocols import BlobUploader
from ..work.scan import DEVICE_ALIASES
from ..targets.redaction import register_secret
from ..work.directories import directory_stored
from ..work.transfer import UnitRunner
from ..work.units import DirTask, Outcome, Unit
from ..work.units import UnitFailed as DirectoryFailed

#: seconds between looks at units of an earlier run still running here
_POLL_S = 0.1


class NotJoined(Exception):
    """This Dask worker has not joined the run; the driver joins it and resubmits."""

    def __init__(self, address: str):
        super().__init__(address)
        self.address = address


def listing_digest(path: str) -> bytes:
    """BLAKE2b of the sorted names in directory ``path`` (the view a worker compares with the driver's)."""
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(os.listdir(os.fsencode(path))):
        digest.update(name + b"\0")
    return digest.digest()


@dataclass(frozen=True)
class SourceCheck:
    """How a worker proves it sees SOURCE as the driver does, without writing to it.

    ``path`` must be a directory with inode number ``ino`` (inode numbers of
    NFS, Lustre and GPFS are the server's, the same on every node; device
    numbers are not), and with ``listing``, its names must hash to it: an
    empty mount point, another tree or a stale copy differ. The source is
    not written to: a marker file would change the root's times, which are
    loaded, and a read-only snapshot could not take it.
    """

    path: str
    ino: int
    dev: int
    listing: Optional[bytes] = None

    def verify(self) -> str:
        """'' when this process sees SOURCE as the driver does, else why not."""
        try:
            st = os.stat(self.path)
            listing = listing_digest(self.path) if self.listing is not None else None
        except OSError as exc:
            return "cannot read source '%s': %s" % (self.path, exc.strerror)
        if not stat.S_ISDIR(st.st_mode):
            return "source '%s' is not a directory there" % self.path
        if st.st_ino != self.ino:
            return "source '%s' is another directory there (inode %d, the driver's is %d)" % (self.path, st.st_ino, self.ino)
        if listing != self.listing:
            return "source '%s' lists other names there than on the driver (another tree, or a stale copy)" % self.path
        if st.st_dev != self.dev:
            DEVICE_ALIASES[st.st_dev] = self.dev
        return ""


@dataclass(frozen=True)
class UnitFailed:
    """What one unit of a bundle raised here; the driver raises it as that unit's outcome alone."""

    error: BaseException


class _Run:
    """One run's config on this Dask worker: its uploader, its unit threads and a UnitRunner per unit running.

    The worker process keeps one uploader for the run (one event loop, one
    cap of requests in flight, one connection pool), shared by every unit it
    runs, as a pool process of a local run does (:mod:`clfsload.execute.pool`).
    A bundle's units run ``threads`` at once (:func:`clfsload.execute.pool.unit_threads`:
    several where units wait on a network target, else one): the Dask thread
    that got the bundle and ``threads - 1`` unit threads of the run take its
    units in turn, each on a :class:`UnitRunner` of its own (the state of the
    unit it runs), so the uploader's loop carries many units' blobs per turn
    instead of waking for one unit's at a time.
    """

    def __init__(self, transfer: str, config: WorkerConfig, source: Optional[str] = None):
        self.transfer = transfer
        remote = not isinstance(parse_account(config.account), LocalFolder)
        # the source-concurrency budget split between unit threads and the pipeline, as on a pool
        # process; SOURCE (as this worker sees it) is probed for its round trips: a slow one gets
        # several units at once whatever the target, and big files read ahead from the first read
        config = with_source_judged(config, source)
        self.config, self.threads = with_unit_threads(config, unit_threads(config.switches,
                                                                            remote or config.params.source_slow))
        self.running = 0  # bundles running (a unit thread runs only for one of them)
        self.left = False  # the driver is done with the run: close once no bundle runs
        self._uploader: Optional[BlobUploader] = None
        self._opening = threading.Lock()  # one opener of the uploader; the others wait for it
        self._helpers: Optional[ThreadPoolExecutor] = None
        self._idle: List[UnitRunner] = []
        self._lock = threading.Lock()

    def enter(self) -> BlobUploader:
        """A bundle starts: the run's uploader (opened by the first bundle); raises what opening it raised."""
        with self._lock:
            if self.left:  # closing, or closed: its uploader is not to be reopened under the closer
                raise NotJoined(_worker_address())
            self.running += 1
        try:
            return self.uploader()
        except BaseException:
            self.exit()
            raise

    def exit(self) -> None:
        """A bundle ended (it entered); the last one out of a run the driver left closes it."""
        with self._lock:
            self.running -= 1
            last = self.left and not self.running
        if last:  # the driver left while this bundle ran (Ctrl-C, an error)
            _forget(self)
            self.close()

    def uploader(self) -> BlobUploader:
        """The run's uploader on this worker, opened once."""
        uploader = self._uploader
        if uploader is None:
            with self._opening:
                uploader = self._uploader
                if uploader is None:
                    uploader = self._uploader = open_uploader(self.config)
        return uploader

    def run_one(self, task: Unit, uploader: BlobUploader, unwaited: List[Tuple[int, bytes, List["Future[None]"]]],
                index: int) -> Union[Outcome, UnitFailed]:
        """Run unit ``index`` of a bundle on an idle UnitRunner; what it raised comes back as its UnitFailed.

        A directory unit's own PUTs are not waited for here: they go to
        ``unwaited`` (:func:`_settle_directories`), so the thread goes on to
        the next unit instead of waking once more per unit.
        """
        with self._lock:
            runner = self._idle.pop() if self._idle else None
        if runner is None:
            runner = UnitRunner(self.config.params, uploader)
        writer = runner.directories
        mine: List[Tuple[bytes, List["Future[None]"]]] = []
        if isinstance(task, DirTask):
            writer.unwaited = mine
        try:
            return task.run(runner)
        except Exception as exc:  # TerminalError and the like: the driver stops the run on it
            return UnitFailed(exc)
        finally:
            writer.unwaited = None
            for path, futures in mine:
                unwaited.append((index, path, futures))  # list.append is atomic; each entry carries its index
            with self._lock:
                self._idle.append(runner)

    def run_all(self, tasks: Sequence[Unit], uploader: BlobUploader) -> List[Union[Outcome, UnitFailed]]:
        """Every unit of a bundle, ``threads`` at once; their outcomes in the bundle's order.

        Returns once every PUT of theirs is answered (their directories' too).
        """
        unwaited: List[Tuple[int, bytes, List["Future[None]"]]] = []
        helpers = min(self.threads, len(tasks)) - 1
        if helpers <= 0:
            outcomes = [self.run_one(task, uploader, unwaited, index) for index, task in enumerate(tasks)]
            return _settle_directories(outcomes, unwaited)
        slots: List[Union[Outcome, UnitFailed, None]] = [None] * len(tasks)
        # Each taker runs the next unit not taken yet (next() on a count is atomic),
        # so a unit thread is woken once per bundle, not once per unit.
        turns = itertools.count()

        def take() -> None:
            for index in turns:
                if index >= len(tasks):
                    return
                slots[index] = self.run_one(tasks[index], uploader, unwaited, index)

        with self._lock:
            if self._helpers is None:
                self._helpers = ThreadPoolExecutor(max_workers=self.threads - 1, thread_name_prefix="clfsload-unit")
            pool = self._helpers
        started: List["Future[None]"] = []
        try:
            for _ in range(helpers):
                started.append(pool.submit(take))
            take()  # this Dask thread takes units too
        finally:
            # Every unit is taken once take() is back here: a helper job still queued (behind
            # another bundle's, the pool being the run's) has nothing left to do; dropped, it
            # holds this bundle up no longer.
            # (wait() would still wait for a cancelled job until a pool thread dequeues it.)
            running = [future for future in started if not future.cancel()]
            # never back (even raising) while a unit thread still runs a unit of the bundle:
            # the run's uploader may be closed once the bundle is out
            wait(running)
        for future in running:
            future.result()  # a BaseException a unit raised is raised here, as it was on this thread
        return _settle_directories(slots, unwaited)  # type: ignore[arg-type]  # every index was taken

    def close(self) -> None:
        """Close the uploader and end the unit threads (call once no bundle of the run is running)."""
        with self._lock:
            helpers, self._helpers = self._helpers, None
            uploader, self._uploader = self._uploader, None
            self._idle = []
        if helpers is not None:
            helpers.shutdown(wait=False)
        if uploader is not None:
            uploader.close()


def _settle_directories(outcomes: List[Union[Outcome, UnitFailed]],
                        unwaited: List[Tuple[int, bytes, List["Future[None]"]]]) -> List[Union[Outcome, UnitFailed]]:
    """``outcomes`` once the directories' PUTs in ``unwaited`` (unit index, path, futures) are answered.

    One wait for the whole bundle; a unit whose directory failed to store
    gets the outcome it would have had waiting itself: its Problem
    (:meth:`clfsload.work.units.DirTask.run` turns UnitFailed into it), or
    the TerminalError as its UnitFailed.
    """
    if not unwaited:
        return outcomes
    wait([future for _, _, futures in unwaited for future in futures])
    for index, path, futures in unwaited:
        if isinstance(outcomes[index], UnitFailed):
            continue  # it raised after storing its directory: that stands
        try:
            directory_stored(path, futures)
        except DirectoryFailed as exc:
            outcomes[index] = exc.problem
        except Exception as exc:  # TerminalError
            outcomes[index] = UnitFailed(exc)
    return outcomes


_runs: Dict[str, _Run] = {}
_runs_lock = threading.Lock()


def with_own_switches(config: WorkerConfig, environ: Mapping[str, str]) -> WorkerConfig:
    """``config`` with the worker-side switches this worker's own environment sets put over the driver's."""
    switches = config.switches.overlaid(Switches.from_environ(environ))
    return config if switches is config.switches else dataclasses.replace(config, switches=switches)


async def join(token: str, transfer: str, config: WorkerConfig, check: SourceCheck) -> str:
    """Take part in run ``token``: '' once ready, else why this worker cannot.

    Runs on the worker's event loop (the driver calls it over RPC); the
    blocking parts go to a thread.
    """
    register_secret(config.credential.secret)  # unpickling a Credential registers nothing
    # The exception to "the environment is read at the edge": this is a Dask worker's own edge (module notes).
    config = with_own_switches(config, os.environ)
    earlier = [(t, r) for t, r in list(_runs.items()) if r.transfer == transfer and t != token]
    for _, other in earlier:
        while other.running:
            await asyncio.sleep(_POLL_S)
        _forget(other)
        await asyncio.to_thread(other.close)
    reason = await asyncio.to_thread(check.verify)
    if reason:
        return reason
    if token not in _runs:
        run = await asyncio.to_thread(_Run, transfer, config, check.path)  # may time a few lstats of SOURCE
        with _runs_lock:
            _runs.setdefault(token, run)
    return ""


async def leave(token: str) -> None:
    """Forget run ``token`` and close its uploaders (the driver calls it at the end of a run).

    Returns at once: units still running (the driver stopped early) close
    the uploaders when the last one ends.
    """
    run = _runs.get(token)
    if run is None:
        return
    with run._lock:
        run.left = True
        idle = not run.running
    if idle:  # else the last unit to end does this (and a new run of the transfer waits for it)
        _forget(run)
        await asyncio.to_thread(run.close)


def _worker_address() -> str:
    """The address of the Dask worker this runs on."""
    from distributed import get_worker

    return get_worker().address


def _forget(run: _Run) -> None:
    with _runs_lock:
        for token, known in list(_runs.items()):
            if known is run:
                del _runs[token]


def run_units(token: str, tasks: Sequence[Unit]) -> Tuple[List[Union[Outcome, UnitFailed]], float]:
    """A Dask task: run ``tasks`` of run ``token`` on this worker, several at once where units wait.

    Returns each unit's outcome in order (an exception a unit raised comes
    back as its :class:`UnitFailed`, and the units after it still run), and
    the seconds they took together (the driver sizes its bundles by it).
    Returns once what they stored is durable: one sync of the run's uploader
    for them all once every unit ended, as :func:`clfsload.execute.pool.run_task`
    does for one unit (the uploader's sync covers every blob stored before it,
    whichever thread stored it).
    """
    run = _runs.get(token)
    if run is None:
        raise NotJoined(_worker_address())
    uploader = run.enter()
    started = time.monotonic()
    try:
        outcomes = run.run_all(tasks, uploader)
        uploader.sync()  # their blobs durable before the driver can record them
        return outcomes, time.monotonic() - started
    finally:
        run.exit()


def run_unit(token: str, task: Unit) -> Outcome:
    """A Dask task of one unit (:func:`run_units` of one; what it raised is raised)."""
    (outcome,), _ = run_units(token, [task])
    if isinstance(outcome, UnitFailed):
        raise outcome.error
    return outcome


__all__ = ["NotJoined", "SourceCheck", "UnitFailed", "join", "leave", "run_unit", "run_units"]
