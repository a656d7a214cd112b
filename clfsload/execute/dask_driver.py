"""The driver side of a load on Dask (``--dask ADDRESS``, or ``load(..., client=...)``).

The driver keeps every phase but TRANSFER's and RECONCILE's units, and the
one state database; those units become Dask tasks (:mod:`clfsload.execute.dask_worker`).
:class:`DaskRun` is one run's use of the cluster: it connects, checks that
every worker sees SOURCE as the driver does (its inode number and the names
in it, read back on each worker), hands each
worker the run's config directly, and gives each phase a
:class:`DaskUnitPool`, which looks like :class:`clfsload.execute.pool.UnitPool` to
the engine.

Cost per unit: a Dask task costs the scheduler, the driver and the worker
far more than a small directory does, so a task carries a bundle of units
sized to about :data:`BUNDLE_SECONDS` of work (from the units' mean time so
far; one unit a task until it is known), and each bundle's result is
fetched by a coroutine on the client's loop. Every unit still has its own
future, outcome, problem and fault handling.

Faults:

* a worker that dies (its process or its node) costs the bundle it ran: Dask
  runs it again elsewhere, under the same names, so nothing is duplicated.
  The units that were on a lost worker are reported by :meth:`DaskUnitPool.repeated`,
  and the engine puts them on the sweep list: what the lost attempt wrote
  and the rerun did not (a file that shrank meanwhile) is deleted in FINALIZE;
* a unit whose workers die ``distributed.scheduler.allowed-failures`` times
  is recorded as a problem of its directory (rerun to retry it); a bundle
  of several that does is sent again one unit to a task first, so only
  the unit that kills its workers becomes a problem;
* a worker that starts after the run began is joined when its first unit
  comes back with :class:`~clfsload.execute.dask_worker.NotJoined`;
* the scheduler lost, or the driver killed: the state is saved; the same
  command resumes.
"""

import itertools
import logging
import os
import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Dict, Iterable, List, Optional, Set, Tuple

from ..errors import ClfsLoadError
from .pool import WorkerConfig
from ..work.scan import Problem
from ..work.units import Outcome, Unit

log = logging.getLogger("clfsload")

#: seconds between looks at the cluster's size (each look is a round trip to the scheduler)
CAPACITY_REFRESH_S = 2.0
#: seconds the driver gives the workers to let go of a run as it ends
LEAVE_TIMEOUT_S = 10
#: times one unit is submitted again because the worker it reached had not joined
REJOINS = 20
#: seconds of work a bundle of units is sized for (from the units' mean time so far):
#: enough to spread a task's cost over many small units, short enough to keep the threads evenly busy
BUNDLE_SECONDS = 0.1
#: units in one Dask task at most
MAX_BUNDLE = 64
#: bundles kept queued per worker thread
BUNDLES_PER_THREAD = 3


class DaskError(ClfsLoadError):
    """The Dask cluster cannot run this load; the message says why and what to do."""


def _distributed():
    try:
        import distributed
    except ImportError:
        raise DaskError(
            "--dask needs Dask distributed, which is not installed: pip install \"clfsload[dask]\""
        ) from None
    return distributed


def connect(address: str, timeout: float):
    """A ``distributed.Client`` of the scheduler at ``address``; DaskError if it cannot be reached.

    ``timeout``: seconds to wait for the scheduler to answer (``CLFSLOAD_DASK_TIMEOUT``,
    :attr:`clfsload.settings.Switches.dask_timeout_s`).
    """
    distributed = _distributed()
    try:
        return distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise DaskError(
            "cannot reach the Dask scheduler at '%s' (%s); start it or give its address to --dask" % (address, exc)
        ) from None


class DaskRun:
    """One run of the loader on a Dask cluster: its token, its joined workers, its pools."""

    def __init__(self, client, owned: bool, transfer: str):
        self.client = client
        self._owned = owned  # we connected it: we close it
        self.transfer = transfer
        #: names this run's tasks (readable in the dashboard) and its config on the workers
        self.token = "%s-%s" % (transfer[:8], secrets.token_hex(4))
        self._joined: Set[str] = set()
        self._join_lock = threading.Lock()
        self._config: Optional[WorkerConfig] = None
        self._check = None
        self._repeated: Set[str] = set()
        self._keys = itertools.count(1)
        self._thread_count = 1
        self._threads_at = float("-inf")
        self._unit_s: Optional[float] = None  # mean seconds per unit on a worker (moving average)
        self._offload: Optional[ThreadPoolExecutor] = None
        client.subscribe_topic("all", self._on_event)

    # --- workers -------------------------------------------------------------

    def start(self, config: WorkerConfig, source: str) -> None:
        """Check every worker sees SOURCE and give each the run's config (before the first unit)."""
        from .dask_worker import SourceCheck, listing_digest

        self._config = config
        wait = config.switches.dask_wait_s  # CLFSLOAD_DASK_WAIT; first: a malformed one fails before any wait
        real = os.path.realpath(source)
        st = os.stat(real)
        workers = self._wait_for_workers(wait)
        self._check = SourceCheck(real, st.st_ino, st.st_dev, listing_digest(real))
        self._join(workers, first=True)
        self._check = SourceCheck(real, st.st_ino, st.st_dev)  # later joiners: the tree may have changed since
        log.info("Dask: %d workers with %d threads joined the run at %s", len(workers),
                 sum(self._threads().values()), self.client.scheduler.address)

    def _threads(self) -> Dict[str, int]:
        info = self.client.scheduler_info()
        return {addr: w.get("nthreads", 1) for addr, w in info.get("workers", {}).items()}

    def _wait_for_workers(self, wait: float) -> List[str]:
        """The workers' addresses, once there is one; DaskError after ``wait`` seconds without any."""
        workers = list(self._threads())
        if workers:
            return workers
        log.info("waiting up to %d s for the Dask cluster's first worker", wait)
        try:
            self.client.wait_for_workers(1, timeout=wait)
        except (TimeoutError, OSError):
            raise DaskError(
                "the Dask cluster at '%s' has no worker after %d s; start workers (cluster.scale(N)) and run again"
                % (self.client.scheduler.address, wait)
            ) from None
        return list(self._threads())

    def _join(self, workers: Iterable[str], first: bool = False) -> None:
        """Join ``workers`` to the run, directly (never through the scheduler); DaskError if one cannot."""
        from .dask_worker import join

        todo = [w for w in workers if w not in self._joined]
        if not todo:
            return
        args = (self.token, self.transfer, self._config, self._check)
        replies = self.client.sync(_call_each, self.client, todo, join, args)
        for address, reply in replies.items():
            if isinstance(reply, BaseException):
                if not first:
                    # Going or restarting meanwhile: the unit that brought it here is
                    # submitted again, and its next worker joins then (bounded by REJOINS).
                    log.debug("Dask: worker %s did not join (%s: %s)", address, type(reply).__name__, reply)
                    continue
                raise DaskError("Dask worker %s did not join the run: %s" % (address, reply))
            if reply:
                raise DaskError(
                    "Dask worker %s cannot take part: %s; every worker must see SOURCE at the same path "
                    "(a shared filesystem)" % (address, reply)
                )
            self._joined.add(address)

    def rejoin(self, address: str) -> None:
        """Join a worker that came after the start (a unit came back NotJoined from it)."""
        with self._join_lock:
            self._joined.discard(address)  # restarted under the same address: join again
            self._join([address])

    def _on_event(self, event) -> None:
        # Runs on the client's event loop, in order with the results of tasks:
        # a rerun's result always comes after the removal that caused it.
        _, msg = event
        if isinstance(msg, dict) and msg.get("action") == "remove-worker":
            self._joined.discard(msg.get("worker"))
            for field in ("processing-tasks", "lost-computed-tasks"):
                for key in msg.get(field) or ():
                    if isinstance(key, str) and key.startswith("clfsload-"):
                        self._repeated.add(key)

    # --- pools and end -------------------------------------------------------

    def pool(self) -> "DaskUnitPool":
        """A pool for one phase's units."""
        return DaskUnitPool(self)

    def next_key(self, task: Unit, count: int = 1) -> str:
        """A unique Dask key for one submission of ``task`` (and ``count - 1`` units after it), readable in the dashboard."""
        more = "+%d" % (count - 1) if count > 1 else ""
        return "clfsload-%s%s-%s-%d" % (task.dask_key(), more, self.token, next(self._keys))

    def was_repeated(self, keys: Iterable[str]) -> bool:
        """True if a task under one of ``keys`` was on a worker the scheduler lost."""
        return any(key in self._repeated for key in keys)

    def repeat(self, keys: Iterable[str]) -> None:
        """Report the tasks under ``keys`` as run more than once (:meth:`was_repeated`)."""
        self._repeated.update(keys)

    def timed(self, units: int, seconds: float) -> None:
        """A bundle of ``units`` took ``seconds`` on its worker: the mean that sizes the bundles moves."""
        per_unit = seconds / max(units, 1)
        self._unit_s = per_unit if self._unit_s is None else 0.7 * self._unit_s + 0.3 * per_unit

    def bundle_size(self) -> int:
        """Units per Dask task: about :data:`BUNDLE_SECONDS` of work at the units' mean time so far.

        One unit a task until the first results come back; whatever the
        size, the units of a bundle are the ones the engine queued in a row.
        """
        if self._unit_s is None:
            return 1
        return max(1, min(MAX_BUNDLE, int(BUNDLE_SECONDS / max(self._unit_s, 1e-6))))

    def capacity(self) -> int:
        """Units to keep queued: :data:`BUNDLES_PER_THREAD` bundles per worker thread, at least four units.

        The thread count is asked of the scheduler at most every 2 s.
        """
        now = time.monotonic()
        if now - self._threads_at > CAPACITY_REFRESH_S:
            self._thread_count = max(1, sum(self._threads().values()))
            self._threads_at = now
        return self._thread_count * max(4, BUNDLES_PER_THREAD * self.bundle_size())

    def offload(self, function, *args) -> None:
        """Run ``function(*args)`` on the run's helper thread (what must not block the client's loop)."""
        if self._offload is None:
            self._offload = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clfsload-dask")
        self._offload.submit(function, *args)

    def close(self) -> None:
        """Let the workers close this run's uploaders; disconnect if we connected."""
        from .dask_worker import leave

        if self._offload is not None:
            self._offload.shutdown(wait=True)
            self._offload = None
        try:
            if self._joined:
                self.client.sync(_call_each, self.client, sorted(self._joined), leave, (self.token,),
                                 callback_timeout=LEAVE_TIMEOUT_S)
        except Exception:  # the cluster may be gone; nothing here is needed for the container
            log.debug("Dask: leaving the workers failed", exc_info=True)
        try:
            self.client.unsubscribe_topic("all")
        except Exception:
            pass
        if self._owned:
            self.client.close()


async def _call_each(client, addresses: List[str], function, args: Tuple) -> Dict[str, object]:
    """Run ``function(*args)`` on each worker by a direct RPC; replies (or the exception) by address."""
    import asyncio

    from distributed.protocol.pickle import dumps
    from distributed.core import clean_exception

    payload = dict(function=dumps(function), args=dumps(args), kwargs=dumps({}), wait=True)

    async def one(address: str):
        try:
            reply = await client.rpc(address).run(**payload)
        except Exception as exc:
            return exc
        if reply.get("status") == "OK":
            return reply.get("result")
        try:
            _, exc, _ = clean_exception(**reply)
            return exc
        except Exception:
            return RuntimeError("the call failed on the worker")

    replies = await asyncio.gather(*(one(a) for a in addresses))
    return dict(zip(addresses, replies))


class DaskUnitPool:
    """Runs units as Dask tasks, several to a task; the engine sees :class:`clfsload.execute.base.Pool`.

    :meth:`submit` holds each unit until :meth:`flush` (the drain loop calls
    it after each round of submissions) or until a bundle is full, then
    sends the units held as Dask tasks of :meth:`DaskRun.bundle_size` units
    each (:func:`clfsload.execute.dask_worker.run_units`). Each bundle's
    result is fetched by a coroutine on the client's event loop (one gather
    per bundle, none in a callback thread) that settles every unit's own
    future. Faults stay per unit:

    * a bundle on a lost worker reruns whole, under the same names: every
      unit in it is reported by :meth:`repeated`;
    * a bundle of several units that comes back ``KilledWorker`` is sent
      again one unit to a task (which unit killed its workers is not known;
      the others must not become problems): only a unit alone in its task
      becomes a Problem on ``KilledWorker``; the units sent again are
      reported by :meth:`repeated`, since the killed attempts may have
      stored some of what they write;
    * ``NotJoined``: the worker is joined, and the bundle sent again.
    """

    def __init__(self, run: DaskRun):
        self._run = run
        self._held: List[Tuple[Unit, "Future[Outcome]"]] = []  # submitted, not yet sent
        self._bundles: Dict[str, object] = {}  # key -> Dask future, while in flight
        self._keys: Dict[Future, List[str]] = {}  # outer future -> every key it was submitted under
        self._lock = threading.Lock()
        self._closed = False

    @property
    def capacity(self) -> int:
        """Units to keep queued: enough bundles per worker thread of the cluster now."""
        return self._run.capacity()

    def submit(self, task: Unit) -> "Future[Outcome]":
        """Queue one unit (it is sent with the next :meth:`flush`, or once a bundle is full)."""
        outer: "Future[Outcome]" = Future()
        outer.set_running_or_notify_cancel()
        self._keys[outer] = []
        if not getattr(task, "bundled", False):
            # Ranges of a huge file (up to 1 GiB), batches of a huge directory, deferred
            # directories and linked objects: far longer than the directories whose mean
            # time sizes the bundles, so each goes alone (a bundle of them would hold
            # every outcome, and a lost worker would repeat them all).
            self._launch([(task, outer)])
            return outer
        self._held.append((task, outer))
        if len(self._held) >= self._run.bundle_size():
            self.flush()
        return outer

    def flush(self) -> None:
        """Send the units held so far, as bundles of :meth:`DaskRun.bundle_size` units."""
        held, self._held = self._held, []
        size = self._run.bundle_size()
        for start in range(0, len(held), size):
            self._launch(held[start:start + size])

    def repeated(self, future: "Future[Outcome]") -> bool:
        """True if the unit may have run more than once (a worker was lost while it ran)."""
        return self._run.was_repeated(self._keys.pop(future, ()))

    def _launch(self, units: List[Tuple[Unit, "Future[Outcome]"]]) -> None:
        from .dask_worker import run_units

        client = self._run.client
        key = self._run.next_key(units[0][0], len(units))
        for _, outer in units:
            self._keys[outer].append(key)
        future = client.submit(run_units, self._run.token, [task for task, _ in units], key=key, pure=False)
        with self._lock:
            self._bundles[key] = future
        client.loop.add_callback(self._collect, future, key, units)

    async def _collect(self, future, key: str, units: List[Tuple[Unit, "Future[Outcome]"]]) -> None:
        """On the client's loop: wait for one bundle, fetch its result, settle its units' futures."""
        try:
            # What distributed.as_completed(with_results=True) does: the error
            # (as a (type, value, traceback) tuple) or the cancellation is returned, not raised.
            result = await future._result(raiseit=False)
        except BaseException as exc:  # the gather itself failed (the cluster going away)
            result = exc
        with self._lock:
            self._bundles.pop(key, None)
        if self._closed:
            return
        status = future.status
        if status == "finished" and not isinstance(result, BaseException):
            outcomes, seconds = result
            self._run.timed(len(units), seconds)
            self._settle(units, outcomes)
            return
        if status == "error" and isinstance(result, tuple):
            result = result[1]
        self._failed(units, result, status == "cancelled")

    @staticmethod
    def _settle(units: List[Tuple[Unit, "Future[Outcome]"]], outcomes: List[object]) -> None:
        from .dask_worker import UnitFailed

        for (_, outer), outcome in zip(units, outcomes):
            if isinstance(outcome, UnitFailed):
                outer.set_exception(outcome.error)
            else:
                outer.set_result(outcome)

    def _failed(self, units: List[Tuple[Unit, "Future[Outcome]"]], exc: BaseException, cancelled: bool) -> None:
        """A bundle that came back with ``exc`` instead of its outcomes (on the client's loop)."""
        from distributed import KilledWorker

        from .dask_worker import NotJoined

        if isinstance(exc, NotJoined):
            # Joining is a round trip through this loop: done from another thread.
            self._run.offload(self._rejoin, exc.address, units)
        elif isinstance(exc, KilledWorker) and len(units) > 1:
            self._run.offload(self._one_by_one, units)
        elif isinstance(exc, KilledWorker):
            units[0][1].set_result(Problem(units[0][0].path, "the Dask workers that ran it died each time (killed, "
                                                              "or out of memory); run the same command to retry it"))
        else:
            if cancelled or type(exc).__name__ in ("CancelledError", "FutureCancelledError"):
                exc = DaskError("lost the Dask scheduler at '%s'; the state is saved: run the same command to resume "
                                "once the cluster is back" % self._run.client.scheduler.address)
            for _, outer in units:
                outer.set_exception(exc)

    def _rejoin(self, address: str, units: List[Tuple[Unit, "Future[Outcome]"]]) -> None:
        try:
            if self._closed:
                return
            if any(len(self._keys.get(outer, ())) > REJOINS for _, outer in units):
                raise DaskError("Dask worker %s did not join the run after %d tries; check the workers' logs"
                                % (address, REJOINS))
            self._run.rejoin(address)
            self._launch(units)
        except BaseException as error:
            for _, outer in units:
                outer.set_exception(error)

    def _one_by_one(self, units: List[Tuple[Unit, "Future[Outcome]"]]) -> None:
        try:
            if self._closed:
                return
            self._run.repeat(self._keys.get(units[0][1], ())[-1:])  # the killed attempts may have stored some
        except BaseException as error:
            for _, outer in units:
                outer.set_exception(error)
            return
        for index, unit in enumerate(units):
            try:
                self._launch([unit])
            except BaseException as error:
                # the ones launched are settled by their own tasks: fail only the rest
                for _, outer in units[index:]:
                    outer.set_exception(error)
                return

    def shutdown(self, cancel: bool = False) -> None:
        """Stop: with ``cancel`` the queued units are cancelled (running ones finish on their workers)."""
        self._held = []
        if cancel:
            self._closed = True
            with self._lock:
                futures = list(self._bundles.values())
                self._bundles.clear()
            if futures:
                try:
                    self._run.client.cancel(futures)
                except Exception:
                    log.debug("Dask: cancelling units failed", exc_info=True)


__all__ = ["DaskError", "DaskRun", "DaskUnitPool", "connect"]
