"""Where units run: worker processes on this node, or the driver itself.

Each worker process opens its own connection to the target once (the
credential reaches it in the initializer, never in a task), then runs
units (:data:`clfsload.work.units.Unit`: directories, batches of a huge directory's entries,
ranges of a huge file's segments, hard-linked objects) and returns their
outcome. The driver alone writes the state store.

A worker process runs up to ``CLFSLOAD_UNIT_THREADS`` units at once
(:data:`DEFAULT_UNIT_THREADS`; :mod:`clfsload.execute.procpool`), a thread
each with a :class:`UnitRunner` of its own (the state of the unit it runs),
all sharing the process's uploader (one event loop and byte budget, or one
local target) and its pipeline of source operations: a unit waiting for its
PUTs or for a slow source no longer leaves the process idle. Each outcome
returns as its unit ends, whatever its siblings do. Ids come from the unit
(its directory unit number, the entry's rank), never from the thread.

Durability: a unit's outcome leaves the worker only once every blob it
stored is durable (:func:`run_task` syncs the uploader after the unit: for a
local folder one batch of fsyncs per unit, for Azure nothing, an
acknowledged Put Blob is durable). So the driver never records as stored
what a power loss could still take away; what the driver writes itself is
synced before each state commit (:class:`clfsload.driver.state.StateStore`).
"""

import contextlib
import logging
import os
import select
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ContextManager, Optional

from ..settings import Switches
from ..targets import open_async_target, open_target
from ..targets.credentials import Credential
from ..targets.endpoint import LocalFolder, parse_account
from ..work import source_reads
from ..work.protocols import BlobUploader
from ..work.units import FileRange, Outcome, RunParams, Unit
from ..work.upload import DirectUploader, Uploader
from .forkserver import start_forkserver
from .procpool import ThreadedProcessPool

if TYPE_CHECKING:  # the driver imports this module for UnitPool and never runs a unit (processes > 0): see _runner_type
    from ..work.transfer import UnitRunner

#: units a worker process runs at once unless ``CLFSLOAD_UNIT_THREADS`` says otherwise
DEFAULT_UNIT_THREADS = 8
#: ranges of a huge file a worker process runs at once, whatever its unit threads: each
#: holds segments of 8 MiB in memory and reads many chunks ahead on its own, so more at
#: once would raise the peak RSS (x2 with 8 threads) for nothing (LZ4 keeps a core busy)
RANGE_THREADS = 1
#: the same where SOURCE is slow: one range's reads then run while the other is encoded and
#: written (with one, the reads stopped for each range's encoding: 4 x 128 MiB at 2 ms per
#: operation loaded in 1.1 s instead of 1.7, reads ahead from the first read included)
RANGE_THREADS_SLOW_SOURCE = 2


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker reaches the target and what the run's parameters are."""

    account: str
    container: str
    credential: Credential
    params: RunParams
    #: uploads in flight per worker process
    upload_threads: int
    #: the run-time switches the edge read (the workers read no environment)
    switches: Switches = Switches()


_config: Optional[WorkerConfig] = None  # this pool process's run
_uploader: Optional[BlobUploader] = None  # this pool process's, shared by its unit threads
_threads = threading.local()  # each unit thread's own UnitRunner
_ranges = threading.BoundedSemaphore(RANGE_THREADS)  # this pool process's ranges running


def uploads_in_flight(upload_threads: int, max_in_flight: Optional[int] = None) -> int:
    """Requests one worker process keeps in flight to a network target.

    The reference ran ``worker_thread_count`` threads, one synchronous PUT
    each. One event loop carries many more for the same CPU, and a server
    far away needs many in flight to be kept busy; more requests per loop
    turn also make each cheaper. So: four per reference thread, at least 64.
    ``max_in_flight`` (``CLFSLOAD_MAX_IN_FLIGHT=N``, :class:`~clfsload.settings.Switches`)
    sets it outright (a benchmark's stand-in for a node's network cap, or a
    shared link to spare).
    """
    if max_in_flight is not None and max_in_flight > 0:
        return max_in_flight
    return max(64, 4 * upload_threads)


#: lstats of SOURCE's first entries timed to tell a slow source from a fast one
PROBE_SAMPLES = 8


def source_is_slow(source: Optional[str], samples: int = PROBE_SAMPLES) -> bool:
    """True if SOURCE's round trips are worth overlapping: the median of a few timed ``lstat`` calls
    of its first entries (and of listing them) is past :data:`clfsload.work.source_reads.AHEAD_LATENCY`.

    An NFS filer or a parallel file system answers in 0.3-20 ms, tmpfs or a
    local disk's page cache in microseconds. Unreadable or empty: False (the
    load reports what it cannot read).
    """
    if not source:
        return False
    try:
        start = time.monotonic()
        with os.scandir(source) as listing:
            paths = [entry.path for _, entry in zip(range(samples), listing)]
        took = [time.monotonic() - start]
        # the median of n samples is past the threshold iff n - n // 2 of them are: the lstats
        # stop as soon as either side has its majority (5 round trips of 9 at most, not 9,
        # where each costs up to 20 ms), and the answer is the median's all the same
        count = 1 + len(paths)
        slow_needed, fast_needed = count - count // 2, count // 2 + 1
        for path in paths:
            slow = sum(1 for t in took if t > source_reads.AHEAD_LATENCY)
            if slow >= slow_needed or len(took) - slow >= fast_needed:
                break
            start = time.monotonic()
            os.lstat(path)
            took.append(time.monotonic() - start)
    except OSError:
        return False
    slow = sum(1 for t in took if t > source_reads.AHEAD_LATENCY)
    return slow >= slow_needed


def unit_threads(switches: Switches, waits: bool = True) -> int:
    """Units one worker process runs at once: ``CLFSLOAD_UNIT_THREADS``, else :data:`DEFAULT_UNIT_THREADS`
    where units wait (``waits``: a network target, or a SOURCE :func:`source_is_slow` judged slow), else one.

    Several units at once keep a process's uploads and source pipeline busy
    while its units wait; where nothing waits (a local folder written from
    tmpfs or a local disk) the extra unit threads cost: measured side by side
    on a quiet machine, eight per process loaded small files from tmpfs at
    0.90-0.92 of one (``bench/run.py --only small``).
    """
    if switches.unit_threads:
        return switches.unit_threads
    return DEFAULT_UNIT_THREADS if waits else 1


def with_source_judged(config: WorkerConfig, source: Optional[str]) -> WorkerConfig:
    """``config`` with SOURCE judged slow or not (:func:`source_is_slow`: a few timed ``lstat`` calls)."""
    slow = source_is_slow(source)
    return replace(config, params=replace(config.params, source_slow=slow)) if slow else config


def with_unit_threads(config: WorkerConfig, threads: int) -> "tuple[WorkerConfig, int]":
    """The config a worker of ``threads`` unit threads gets, and how many unit threads it runs.

    ``depth`` is the process's share of ``--source_concurrency``, and each
    unit thread runs source operations on its own thread besides those of
    the process's pipeline (:class:`clfsload.work.source_reads.SourceReads`).
    So a process runs at most a quarter of ``depth`` unit threads (one at
    least), and its pipeline gets ``depth - threads + 1``: in all, still at
    most ``depth`` at a time where the pipeline's threads are the cap (a
    pool in this process). In the worker processes the node's slots are
    the cap (:class:`clfsload.work.source_reads.NodeSlots`) and the
    pipeline's share sets how far each unit's reads run ahead (twice it).
    """
    params = config.params
    depth = params.source_concurrency or source_reads.DEFAULT_CONCURRENCY
    threads = max(1, min(threads, depth // 4))
    return replace(config, params=replace(params, source_concurrency=depth - threads + 1)), threads


def _runner_type() -> "type[UnitRunner]":
    """:class:`clfsload.work.transfer.UnitRunner`, imported on first use.

    The worker side loads it with the forkserver's preload
    (:mod:`.forkserver_preload`); the driver, which imports this module for
    :class:`UnitPool`, does not need it (it runs units only with
    ``processes=0``).
    """
    from ..work.transfer import UnitRunner

    return UnitRunner


def open_runner(config: WorkerConfig) -> "UnitRunner":
    """A :class:`UnitRunner` with its own connection to the target (one per process or Dask thread)."""
    return _runner_type()(config.params, open_uploader(config))


def open_uploader(config: WorkerConfig) -> BlobUploader:
    """The uploader of one process (or Dask thread): its connection to the target; thread-safe."""
    switches = config.switches
    uploader: BlobUploader
    if isinstance(parse_account(config.account), LocalFolder):
        # Writing a file is cheaper than handing it to an event loop thread.
        uploader = DirectUploader(open_target(config.account, config.container, config.credential),
                                  config.params.compress)
    else:
        in_flight = uploads_in_flight(config.upload_threads, switches.max_in_flight)

        def opener():
            # as many connections as requests in flight: the pool must not be the cap
            return open_async_target(config.account, config.container, config.credential,
                                     options=switches.target_options(local=False, in_flight=in_flight))

        uploader = Uploader(opener, config.params.compress, max_in_flight=in_flight,
                            pace=not switches.no_pacing, uvloop=not switches.no_uvloop)
    return uploader


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when its parent goes (PR_SET_PDEATHSIG).

    The parent is the forkserver, which exits when the driver does, so a
    driver killed with SIGKILL leaves no worker uploading behind its back.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the pool's own shutdown still applies


def _die_with_driver(driver: int) -> None:
    """Exit at once when the driver process is gone, however it went.

    PR_SET_PDEATHSIG alone is not enough: a worker's parent is the
    forkserver, and the forkserver stays up while any worker holds its
    liveness pipe, so a driver killed with SIGKILL would leave both behind.
    A thread waits on a pidfd of the driver (Linux 5.3+), or polls it.
    """
    def watch() -> None:
        try:
            fd = os.pidfd_open(driver)
        except (AttributeError, OSError):
            fd = -1
        if fd >= 0:
            select.select([fd], [], [])  # readable once the driver has exited
        else:
            while True:
                try:
                    os.kill(driver, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    pass
                threading.Event().wait(0.5)
        os._exit(1)  # never run on without the driver: nobody would record the work

    threading.Thread(target=watch, name="clfsload-driver-watch", daemon=True).start()


def _init_process(config: WorkerConfig, driver: int, reports=None,
                  slots: Optional[source_reads.NodeSlots] = None) -> None:
    global _config, _uploader, _ranges
    _die_with_parent()
    _die_with_driver(driver)
    source_reads.use_node_slots(slots)  # the node's cap, shared with the pool's other processes
    if reports is not None:  # stuck source operations: the driver logs and counts them
        pid = os.getpid()
        source_reads.REPORTERS["stuck"] = lambda path, op, waited: reports.put(
            ("stuck", pid, source_reads.describe_stuck(path, op, waited)))
        source_reads.REPORTERS["count"] = lambda count: reports.put(("count", pid, count))
    # Ctrl-C is the driver's business: it stops the pool and records the state.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # glibc gives each new thread a malloc arena of its own (up to 8 per core), and an
    # arena keeps what a unit's segments took: with several unit threads the peak RSS
    # doubled. Set before the unit threads start, as the source pipeline's threads do.
    source_reads._set_malloc_arenas(source_reads.ARENAS)
    source_reads.keep_segment_buffers()  # a worker stores data for its whole life
    _config = config
    _uploader = open_uploader(config)
    _ranges = threading.BoundedSemaphore(RANGE_THREADS_SLOW_SOURCE if config.params.source_slow else RANGE_THREADS)


def _thread_runner() -> "UnitRunner":
    """This unit thread's :class:`UnitRunner` (made at its first unit), on the process's shared uploader."""
    runner = getattr(_threads, "runner", None)
    if runner is None:
        assert _config is not None and _uploader is not None, "pool process not initialised"
        runner = _threads.runner = _runner_type()(_config.params, _uploader)
    return runner


def run_task(task: Unit, runner: "Optional[UnitRunner]" = None) -> Outcome:
    """Run one unit (on ``runner``, else this unit thread's); a directory that fails outright comes back as its Problem.

    Returns once what the unit stored is durable. TerminalError propagates:
    the driver stops the run.
    """
    gate: ContextManager[object] = contextlib.nullcontext()
    if runner is None:  # a unit thread of a pool process
        runner = _thread_runner()
        if isinstance(task, FileRange):
            gate = _ranges
    with gate:
        outcome = task.run(runner)
    # Its blobs durable before the driver can record them. The uploader is
    # shared by the process's unit threads: its sync returns only once every
    # blob stored before the call is durable, even those another thread's
    # sync is still fsyncing (LocalFolderTarget.sync).
    runner.uploader.sync()
    return outcome


class UnitPool:
    """Runs units concurrently, ``unit_threads`` at once in each of ``processes`` worker processes.

    ``processes=0`` runs them in this process, one at a time. The worker
    processes' source operations draw from one budget of
    ``source_concurrency`` slots (the node's ``--source_concurrency``; 0:
    their shares of the run's parameters summed, :class:`clfsload.work.source_reads.NodeSlots`). A worker
    process that dies stops the run: every unit not finished fails with
    :class:`concurrent.futures.process.BrokenProcessPool`, as with
    :class:`~concurrent.futures.ProcessPoolExecutor`.
    """

    def __init__(self, config: WorkerConfig, processes: int, source_concurrency: int = 0):
        self.processes = processes
        self.unit_threads = 1
        self._executor: "ThreadedProcessPool | ThreadPoolExecutor"
        if processes > 0:
            remote = not isinstance(parse_account(config.account), LocalFolder)
            # the node's cap (--source_concurrency), of which params.source_concurrency is one process's share
            node_cap = source_concurrency or processes * (config.params.source_concurrency
                                                          or source_reads.per_process(source_reads.DEFAULT_CONCURRENCY, processes))
            # a SOURCE judged slow (params.source_slow) runs several units at once as a network target does
            threads = unit_threads(config.switches, remote or config.params.source_slow)
            config, self.unit_threads = with_unit_threads(config, threads)
            context = start_forkserver()
            self._reports = context.SimpleQueue()
            self._stop_relay = threading.Event()
            # One budget of source operations for the node, drawn from by every worker process.
            # Kept for the pool's life: a worker opens the semaphore by name as it starts
            # (after start() returned), and the last reference here unlinks the name.
            self._slots = source_reads.NodeSlots(context, node_cap)
            self._executor = ThreadedProcessPool(
                processes, self.unit_threads, context, initializer=_init_process,
                initargs=(config, os.getpid(), self._reports, self._slots),
            )
            self._inline: "Optional[UnitRunner]" = None
            self._listener: Optional[threading.Thread] = threading.Thread(
                target=_relay_reports, args=(self._reports, self._stop_relay), name="clfsload-stuck-reports", daemon=True)
            self._listener.start()
        else:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clfsload-unit")
            self._inline = open_runner(config)
            self._listener = None

    @property
    def capacity(self) -> int:
        """How many units to keep queued so no unit thread idles: each process's slots and 3 more."""
        return max(1, self.processes) * (self.unit_threads + 3)

    def submit(self, task: Unit) -> "Future[Outcome]":
        """Queue one unit."""
        if self._inline is not None:
            return self._executor.submit(run_task, task, self._inline)
        return self._executor.submit(run_task, task)

    def repeated(self, future: "Future[Outcome]") -> bool:
        """True if the unit may have run more than once (never here: a lost worker stops the run)."""
        return False

    def shutdown(self, cancel: bool = False) -> None:
        """Stop the workers; with ``cancel`` drop queued units."""
        self._executor.shutdown(wait=True, cancel_futures=cancel)
        if self._inline is not None:
            self._inline.uploader.close()
        if self._listener is not None:
            # No sentinel through the queue: a worker killed while putting a
            # report holds its write lock forever, and a put here would wait on it.
            self._stop_relay.set()
            self._listener.join()
            self._listener = None
            source_reads.REMOTE_STUCK.clear()


def _relay_reports(reports, stop: threading.Event) -> None:
    """The driver's side of the workers' stuck-operation reports: log each, keep the counts, until ``stop``."""
    log = logging.getLogger("clfsload")
    while not stop.is_set():
        if reports.empty():  # polls the pipe, takes no lock
            stop.wait(0.2)
            continue
        kind, pid, value = reports.get()
        if kind == "stuck":
            log.warning("%s", value)
        else:
            source_reads.REMOTE_STUCK[pid] = value
