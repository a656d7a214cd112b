"""Where units run: worker processes on this node, or the driver itself.

Each worker process opens its own connection to the target once (the
credential reaches it in the initializer, never in a task), then runs
units (:data:`Unit`: directories, batches of a huge directory's entries,
ranges of a huge file's segments, hard-linked objects) and returns their
outcome. The driver alone writes the state store.
"""

import multiprocessing
import multiprocessing.forkserver
import os
import select
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional, Union

from ..errors import TerminalError
from ..work.scan import Problem
from ..targets import open_async_target, open_target
from ..targets.credentials import Credential
from ..targets.endpoint import LocalFolder, parse_account
from ..work.ranges import FileRange, RangeDone, RangeVanished
from ..work.transfer import DirResult, DirTask, DirWrite, EntryBatch, LinkDone, LinkTask, RunParams, UnitFailed, Worker
from ..work.upload import DirectUploader, Uploader

Outcome = Union[DirResult, Problem, LinkDone, RangeDone, RangeVanished, None]
#: every kind of unit a pool runs
Unit = Union[DirTask, EntryBatch, FileRange, LinkTask, DirWrite]


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker reaches the target and what the run's parameters are."""

    account: str
    container: str
    credential: Credential
    params: RunParams
    #: uploads in flight per worker process
    upload_threads: int


_worker: Optional[Worker] = None


def uploads_in_flight(upload_threads: int) -> int:
    """Requests one worker process keeps in flight to a network target.

    The reference ran ``worker_thread_count`` threads, one synchronous PUT
    each. One event loop carries many more for the same CPU, and a server
    far away needs many in flight to be kept busy; more requests per loop
    turn also make each cheaper. So: four per reference thread, at least 64.
    ``CLFSLOAD_MAX_IN_FLIGHT=N`` sets it outright (a benchmark's stand-in
    for a node's network cap, or a shared link to spare).
    """
    fixed = os.environ.get("CLFSLOAD_MAX_IN_FLIGHT", "").strip()
    if fixed.isdigit() and int(fixed) > 0:
        return int(fixed)
    return max(64, 4 * upload_threads)


def open_worker(config: WorkerConfig) -> Worker:
    """The Worker of one pool process (or Dask worker): its uploader opened on the target *config* names."""
    uploader: Union[Uploader, DirectUploader]
    if isinstance(parse_account(config.account), LocalFolder):
        # Writing a file is cheaper than handing it to an event loop thread.
        uploader = DirectUploader(open_target(config.account, config.container, config.credential),
                                  config.params.compress)
    else:
        def opener():
            return open_async_target(config.account, config.container, config.credential)

        uploader = Uploader(opener, config.params.compress, max_in_flight=uploads_in_flight(config.upload_threads))
    return Worker(config.params, uploader)


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


def _init_process(config: WorkerConfig, driver: int) -> None:
    global _worker
    _die_with_parent()
    _die_with_driver(driver)
    # Ctrl-C is the driver's business: it stops the pool and records the state.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker = open_worker(config)


def run_task(task: Unit, worker: Optional[Worker] = None) -> Outcome:
    """Run one unit; a directory that fails outright comes back as its Problem.

    TerminalError propagates: the driver stops the run.
    """
    worker = worker or _worker
    assert worker is not None, "worker process not initialised"
    if isinstance(task, LinkTask):
        return worker.store_linked(task)
    if isinstance(task, EntryBatch):
        return worker.run_batch(task)
    if isinstance(task, FileRange):
        return worker.store_range(task)
    if isinstance(task, DirWrite):
        return worker.write_directory(task)
    try:
        return worker.run(task)
    except UnitFailed as exc:
        return exc.problem
    except TerminalError:
        raise


def start_forkserver() -> "multiprocessing.context.ForkServerContext":
    """Start the forkserver the workers fork from, if not running; returns its context.

    It imports this module (and so the whole worker side) once, before it
    forks anything, so a worker starts with everything loaded. Called early
    by the driver, that import overlaps the driver's own start-up checks.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    multiprocessing.forkserver.ensure_running()
    return context  # type: ignore[return-value]


class UnitPool:
    """Runs units concurrently; ``processes=0`` runs them in this process (one at a time)."""

    def __init__(self, config: WorkerConfig, processes: int):
        self.processes = processes
        if processes > 0:
            context = start_forkserver()
            self._executor = ProcessPoolExecutor(
                max_workers=processes, mp_context=context, initializer=_init_process, initargs=(config, os.getpid())
            )
            self._inline: Optional[Worker] = None
        else:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clfsload-unit")
            self._inline = open_worker(config)

    @property
    def capacity(self) -> int:
        """How many units to keep queued so no worker idles."""
        return max(1, self.processes) * 4

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
