"""The read pipeline: source operations issued many at a time, ahead of an in-order consumer.

On an NFS filer or a parallel file system every ``lstat``, ``open`` and
``read`` is a round trip of a millisecond or more; issued one after another
they leave the source idle and the loader waits (issue 19). A
:class:`SourceReads` is one process's pool of threads for them, bounded two
ways:

* a **count** (``--source_concurrency``): every source operation, whether a
  pool thread runs it ahead or the consumer runs it itself
  (:meth:`SourceReads.call`), holds one of ``depth`` slots while it runs, so
  the file system never sees more from this process. In the worker
  processes of a node's local pool the slots are the node's, one budget
  they all draw from (:class:`NodeSlots`, made by the pool's parent): a
  process may use the slots another leaves idle, and the node still never
  has more than ``--source_concurrency`` in flight;
* a **byte budget** for data read ahead but not yet taken by the consumer,
  so memory stays bounded however far the reads run ahead.

The consumer (encoding, compression, upload submission) stays on the unit's
thread and takes results in scan order, so ids, order and containers are
exactly those of reading one entry at a time. Results and exceptions of an
operation are those of the plain call: a FileNotFoundError or OSError comes
out of ``future.result()`` as it would have come out of the call, so the
callers map them exactly as before.

An operation outstanding longer than ``timeout`` seconds (a hung NFS hard
mount) is reported through ``on_stuck`` (path, operation, seconds waited),
again at a slowing rate, until it returns; the load goes on around it within
the budget and ends only when it returns or fails (:class:`HangWatch`).
"""

import collections
import contextlib
import itertools
import logging
import os
import threading
import time
import queue
import sys
from concurrent.futures import Future
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Set, Tuple

from .._native import sourceio

#: source operations in flight per node by default (``--source_concurrency``)
DEFAULT_CONCURRENCY = 64
#: bytes read ahead but not yet consumed, per node by default (spread like the count)
DEFAULT_BUDGET = 64 << 20
#: seconds before an outstanding source operation is reported stuck (``--source_timeout``)
DEFAULT_TIMEOUT = 300.0
#: the size of one read of a big file's data: an 8 MiB segment is read as several in flight
CHUNK = 1 << 20

log = logging.getLogger("clfsload")


def per_process(total: int, processes: int) -> int:
    """One worker process's share of a node's ``total`` (at least 1)."""
    return max(1, total // max(1, processes))


#: a process on the node's slots runs at most this many times its share of them in pool threads ...
NODE_THREADS_PER_SHARE = 2
#: ... and at least this many (its share may be 1 on a node of many processes)
NODE_THREADS_MIN = 16


class NodeSlots:
    """The node's source operations in flight, one budget shared by the worker processes of its pool.

    Made by the pool's parent from its multiprocessing context (a POSIX
    semaphore of ``cap``) and handed to each worker process as it starts
    (:func:`use_node_slots`): a source operation of any of them holds one
    slot while it runs (:meth:`SourceReads.call`), so one process may use
    the slots another leaves idle while the file system never sees more
    than ``cap`` at once from the node. Taking and giving back a free slot
    costs a fraction of a microsecond (no system call); a thread waiting
    for one releases the GIL.
    """

    def __init__(self, context, cap: int) -> None:
        self.cap = max(1, cap)
        self.semaphore = context.BoundedSemaphore(self.cap)


#: this process's share of its node's slots (a worker process of the local pool), else None
_node_slots: Optional[NodeSlots] = None


def use_node_slots(slots: Optional[NodeSlots]) -> None:
    """Draw this process's source operations from the node's ``slots`` (set once, as a worker process starts)."""
    global _node_slots
    _node_slots = slots


class _Op(NamedTuple):
    op: str
    path: Any
    start: float


class HangWatch:
    """Reports source operations outstanding longer than a timeout, at a slowing rate.

    The first report comes ``timeout`` seconds after the operation started,
    the next after twice as long again, and so on (1x, 2x, 4x ... the
    timeout), so a source gone for hours fills no log. ``stuck()`` counts
    those past the timeout now (the progress line shows it).
    """

    def __init__(self, timeout: float, on_stuck: Optional[Callable[[Any, str, float], None]] = None,
                 on_count: Optional[Callable[[int], None]] = None) -> None:
        self.timeout = timeout
        self.on_stuck = on_stuck or _log_stuck
        self.on_count = on_count  # told the number stuck whenever it changes
        self._last_count = 0
        # Written by every thread without a lock (one dict store or pop, atomic under
        # the GIL: the hot path of a fast source pays a few hundred ns); read by the watch.
        self._ops: Dict[int, Tuple[str, Any, float]] = {}  # token -> (op, path, start), as _Op
        #: token -> (op, run): runs of operations on threads of their own (:class:`RunAhead`),
        #: whose running items count as operations of their own
        self._runs: Dict[int, Tuple[str, Any]] = {}
        self._closed_runs: Set[int] = set()  # runs closed, left once nothing of theirs runs
        self._next_report: Dict[int, float] = {}  # the watch thread's own
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()

    def enter(self, op: str, path: Any, now: float) -> int:
        """Record an operation started at ``now``; returns its token for :meth:`leave`."""
        token = next(self._ids)
        self._ops[token] = _Op(op, path, now)
        if self._thread is None:
            self._start()
        return token

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and self.timeout > 0 and not self._stop.is_set():
                self._thread = threading.Thread(target=self._watch, name="clfsload-source-watch", daemon=True)
                self._thread.start()

    def leave(self, token: int) -> None:
        """The operation of ``token`` returned or failed."""
        self._ops.pop(token, None)

    def add_run(self, op: str, run: Any) -> int:
        """Watch the items of ``run`` (``in_flight()``: (path, started)) as operations ``op``; its token."""
        if self.timeout <= 0:
            return 0  # nothing is reported, and no watch thread would prune it
        token = next(self._ids)
        self._runs[token] = (op, run)
        if self._thread is None:
            self._start()
        return token

    def remove_run(self, token: int) -> None:
        """The run of ``token`` was closed by its consumer: watched until its last operation returns.

        An operation the consumer dropped still runs on its thread (a hung
        one, say): it is reported as long as it runs, as a dropped operation
        of a Python pool thread is.
        """
        entry = self._runs.get(token)
        if entry is not None and entry[1].in_flight():
            self._closed_runs.add(token)  # (a closed run starts nothing more: this list only shrinks)
        else:
            self._runs.pop(token, None)

    def _outstanding(self) -> Dict[Any, Tuple[str, Any, float]]:
        """Every operation outstanding now: key -> (op, path, start)."""
        ops: Dict[Any, Tuple[str, Any, float]] = dict(self._ops)  # a copy: other threads add and remove meanwhile
        for token, (op, run) in list(self._runs.items()):
            running = run.in_flight()
            if not running and token in self._closed_runs:
                self._closed_runs.discard(token)
                self._runs.pop(token, None)
            for path, start in running:
                ops[(token, path, start)] = (op, path, start)
        return ops

    def stuck(self) -> int:
        """Operations outstanding longer than the timeout now."""
        limit = time.monotonic() - self.timeout
        return sum(1 for op in self._outstanding().values() if op[2] <= limit)

    def check(self, now: Optional[float] = None) -> List[Tuple[Any, str, float]]:
        """Report what is due now; returns the (path, op, waited) reported."""
        now = time.monotonic() if now is None else now
        due = []
        ops = self._outstanding()
        for token in [t for t in self._next_report if t not in ops]:
            del self._next_report[token]
        for token, (op, path, start) in ops.items():
            waited = now - start
            if waited < self.timeout:
                continue
            if now >= self._next_report.get(token, start + self.timeout):
                # next report after twice the time waited so far: timeout, 2x, 4x, ...
                self._next_report[token] = start + 2 * waited
                due.append((path, op, waited))
        for path, op, waited in due:
            self.on_stuck(path, op, waited)
        return due

    def stop(self) -> None:
        """End the watch thread (the pool it watches is shut down)."""
        self._stop.set()

    def _watch(self) -> None:
        tick = max(0.05, min(5.0, self.timeout / 4))
        while not self._stop.wait(tick):
            try:
                self.check()
                count = self.stuck()
                if count != self._last_count and self.on_count is not None:
                    self.on_count(count)
                self._last_count = count
            except Exception:  # a reporting failure must not end the watch
                pass


def describe_stuck(path: Any, op: str, waited: float) -> str:
    """The warning line of a source operation outstanding ``waited`` seconds."""
    return "'%s': source operation %s has not returned for %s s (the source may be hung); still waiting" % (
        os.fsdecode(path).encode("utf-8", "backslashreplace").decode() if isinstance(path, bytes) else path,
        op, "%.1f" % waited if waited < 10 else "%.0f" % waited)


def _log_stuck(path: Any, op: str, waited: float) -> None:
    log.warning("%s", describe_stuck(path, op, waited))


#: an operation kind whose recent fastest took longer than this (seconds) is issued ahead;
#: faster ones (tmpfs, a local disk, a page cache) run on the consumer's thread, as a plain
#: walk would: handing them to a thread would cost more than they take
AHEAD_LATENCY = 150e-6


_now = time.monotonic
#: operations whose latency is another's: open+read (an open, then the reads of a small file) an open's
_KINDS = {"open+read": "open"}


class SourceReads:
    """One process's pool for source operations: at most ``depth`` at a time, ``budget`` bytes read ahead.

    ``call`` runs an operation on the calling thread, ``submit`` on one of
    ``depth - 1`` pool threads; the consumer waits while the pool works and
    works while it waits, so with one consumer at most ``depth`` are in
    flight (a depth of 1: no pool, every operation on the consumer's
    thread). With the node's ``slots`` (a worker process of the local pool),
    every operation holds one of them while it runs, and the pool has up to
    twice the process's share of threads (``slots.cap - 1`` at most, 15 at
    least), so a process may fill much of the node's cap when the others
    leave it idle (one of two, all of it); ``depth`` is then the process's
    share of the cap and sets how far a consumer's reads run ahead (twice it).
    :class:`OrderedAhead` and :class:`AheadReader` run a sequence
    of them ahead of their consumer, but only for operations worth it
    (:meth:`worth_ahead`): each kind's latency is tracked as a decaying
    minimum of its durations, so waits for the GIL do not count and a fast
    source is walked exactly as before.
    """

    def __init__(self, depth: int = DEFAULT_CONCURRENCY, budget: int = DEFAULT_BUDGET,
                 timeout: float = DEFAULT_TIMEOUT, on_stuck: Optional[Callable[[Any, str, float], None]] = None,
                 on_count: Optional[Callable[[int], None]] = None, slots: Optional[NodeSlots] = None):
        self.depth = max(1, depth)
        self.budget = max(CHUNK, budget)
        #: the node's slots every operation here holds while it runs (None: the threads are the cap)
        self.slots = slots.semaphore if slots is not None else None
        #: pool threads: with one consumer, never more than the cap (this process's, or the node's);
        #: on the node's slots at most NODE_THREADS_PER_SHARE times this process's share, at least
        #: NODE_THREADS_MIN: a few processes may each fill the cap, and a node of 64 processes does not
        #: start 64 x 63 threads (main's total was the cap)
        if slots is None:
            self.threads = self.depth - 1
        else:
            self.threads = min(slots.cap, max(NODE_THREADS_PER_SHARE * self.depth, NODE_THREADS_MIN)) - 1
        if self.slots is None:
            # no slot to take: a call is its timing and watch alone, without a frame more on the
            # hot path of a fast source
            self.call = self._timed  # type: ignore[method-assign]
        #: operation kind -> its latency estimate in seconds (decaying minimum)
        self.latency: Dict[str, float] = {}
        #: operation kind -> whether its last run ended inline (judged fast): the next one starts so
        self.run_inline: Dict[str, bool] = {}
        self._pool: Optional[_Threads] = None
        self._pool_lock = threading.Lock()
        self._bytes_lock = threading.Lock()
        self._ahead_bytes = 0  # reserved by reads ahead, not yet released by their consumer
        self.watch = HangWatch(timeout, on_stuck, on_count)
        #: read a big file's data ahead from its first read, whatever the latency estimate of
        #: reads says (set where SOURCE was judged slow at the start): a read the page cache
        #: serves (the kernel's own readahead) sets that estimate low, so on a source whose
        #: misses cost a round trip each, reads ahead would start late and stop again; measured
        #: at 2 ms per operation, 4 x 128 MiB through FUSE kept 4-6 reads in flight for the
        #: first half of the load
        self.read_eagerly = False

    # --- one operation ---------------------------------------------------------------

    def call(self, op: str, path: Any, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on this thread; ``op`` and ``path`` name it if it hangs, ``op`` keeps its latency."""
        slots = self.slots
        if slots is None:  # (not reached: __init__ binds call to _timed then)
            return self._timed(op, path, fn, *args)
        slots.acquire()  # the node's cap: waiting here is not the source's time
        try:
            return self._timed(op, path, fn, *args)
        finally:
            slots.release()

    def _timed(self, op: str, path: Any, fn: Callable[..., Any], *args: Any) -> Any:
        """:meth:`call` once its slot is held (a pool thread holds one for a run of calls)."""
        # The hot path of a fast source (a few microseconds per lstat on tmpfs): the
        # watch's bookkeeping inlined, one dict store and one pop, no lock.
        watch = self.watch
        start = _now()
        token = next(watch._ids)
        watch._ops[token] = (op, path, start)  # an _Op's fields, without building one
        if watch._thread is None:
            watch._start()
        try:
            return fn(*args)
        finally:
            del watch._ops[token]
            took = _now() - start
            latency = self.latency
            kind = _KINDS.get(op, op)
            known = latency.get(kind, 0.0)
            # A faster one sets it; a slower one raises it by a quarter (and 5 us) at most:
            # about ten slow ones in a row make a kind slow, a stray one (a page fault, a
            # busy machine) does not, and a process's waits for the GIL never keep it so
            latency[kind] = took if took < known else min(took, known * 1.25 + 5e-6)

    def learn(self, op: str, took: float) -> None:
        """Fold one duration of an ``op`` into its latency estimate (as :meth:`call` does for each)."""
        latency = self.latency
        kind = _KINDS.get(op, op)
        known = latency.get(kind, 0.0)
        latency[kind] = took if took < known else min(took, known * 1.25 + 5e-6)

    def run_ahead(self, op: str, paths: Sequence[bytes], limit: int = 0) -> "Optional[RunAhead]":
        """A :class:`RunAhead` of ``op`` over ``paths``, or None where runs are not used here.

        Runs are used by the worker processes of a node's local pool (their
        operations hold the node's slots, in C as in Python) when the compiled
        twin of :mod:`clfsload._native.sourceio` is loaded, for a SOURCE
        judged slow at the start (:attr:`read_eagerly`) or a kind worth
        issuing ahead: elsewhere the caller issues its operations on this
        pool's Python threads, as before.
        """
        if self.slots is None or not sourceio.IMPLEMENTATION.RUNS_IN_PARALLEL or self.threads <= 0:
            return None
        # where SOURCE was judged slow at the start, always: an estimate follows the fastest
        # recent operation, and with attribute caching on an lstat the cache answers (or a
        # unit's first files, not timed yet) would send whole directories down the Python path;
        # a run judges its own operations (fast ones: the consumer runs them itself)
        if not self.read_eagerly:
            kind = _KINDS.get(op, op)
            # a kind not timed yet goes by the lstats, timed by then: the same source
            if self.latency.get(kind, self.latency.get("lstat", 0.0)) <= AHEAD_LATENCY:
                return None
        return RunAhead(self, op, paths, limit)

    def worth_ahead(self, op: str) -> bool:
        """True if operations of this kind are slow enough to issue ahead (and there is a pool)."""
        return self.threads > 0 and self.latency.get(_KINDS.get(op, op), 0.0) > AHEAD_LATENCY

    def submit(self, op: str, path: Any, fn: Callable[..., Any], *args: Any) -> "Future[Any]":
        """``fn(*args)`` on a pool thread, holding a slot while it runs."""
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = _Threads(self.threads, self.slots)
                pool = self._pool
        # with the node's slots, the pool thread holds one for each call it runs
        return pool.submit(self.call if self.slots is None else self._timed, op, path, fn, *args)

    def map(self, op: str, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator["Future[Any]"]:
        """Futures of ``fn(item)`` in order, at most twice ``depth`` submitted ahead of the one taken."""
        return OrderedAhead(self, [(item, op, fn, (item,), 0) for item in items]).futures()

    def results(self, op: str, fn: Callable[[Any], Any], items: Sequence[Any],
                catch: type = OSError) -> List[Any]:
        """``fn(item)`` of each item in order, or the ``catch`` exception it raised.

        Run on this thread while ``op`` is fast (no future, no hand-over: a
        walk of tmpfs costs what it did), through :meth:`map` once it is slow.
        """
        out: List[Any] = []
        call = self.call
        for index, item in enumerate(items):
            if self.worth_ahead(op):
                for future in self.map(op, fn, items[index:]):
                    try:
                        out.append(future.result())
                    except catch as exc:
                        out.append(exc)
                break
            try:
                out.append(call(op, item, fn, item))
            except catch as exc:
                out.append(exc)
        return out

    # --- the byte budget ---------------------------------------------------------------

    def reserve(self, nbytes: int, force: bool = False) -> bool:
        """Take ``nbytes`` of the read-ahead budget; False (nothing taken) if it would overflow, unless ``force``."""
        with self._bytes_lock:
            if not force and self._ahead_bytes and self._ahead_bytes + nbytes > self.budget:
                return False
            self._ahead_bytes += nbytes
            return True

    def release(self, nbytes: int) -> None:
        """Give back what :meth:`reserve` took (the consumer took the data, or it was dropped)."""
        with self._bytes_lock:
            self._ahead_bytes -= nbytes

    @property
    def ahead_bytes(self) -> int:
        """Bytes read (or being read) ahead and not yet consumed."""
        return self._ahead_bytes

    def shutdown(self) -> None:
        """Stop the pool threads once their operations end, and the hang watch.

        Returns at once: an operation still running (one a consumer dropped,
        or a hung one) ends on its own thread, which then exits.
        """
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown()
        self.watch.stop()


#: stack of a pool thread: its calls are shallow (a syscall or five); the default 8 MiB
#: each would put 64 threads at 512 MiB of address space (a command under RLIMIT_AS)
THREAD_STACK = 512 << 10
_stack_lock = threading.Lock()


#: the GIL switch interval once pool threads run (seconds)
SWITCH_INTERVAL = 0.0005
#: malloc arenas of the process once pool threads run (glibc gives each new thread its own, up
#: to 8 per core, each reserving 64 MiB of address space; the pool's calls hardly allocate)
ARENAS = 2


def _set_malloc_arenas(count: int) -> None:
    """glibc's M_ARENA_MAX (0: its default, 8 per core); nothing elsewhere."""
    _mallopt(-8, count)  # M_ARENA_MAX


def _mallopt(param: int, value: int) -> None:
    """glibc's ``mallopt(param, value)``; nothing elsewhere."""
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(param, value)
    except (OSError, AttributeError):
        pass  # not glibc


#: a worker process's malloc keeps buffers up to this size in its heaps instead of a mapping
#: of their own (glibc's ceiling for M_MMAP_THRESHOLD on 64 bits: half its 64 MiB heap size)
MMAP_THRESHOLD = 32 << 20
#: and keeps this much free memory at the top of a heap rather than giving it back
TRIM_THRESHOLD = 128 << 20


def keep_segment_buffers() -> None:
    """Let a worker process reuse the memory of the megabyte buffers it frees instead of unmapping it.

    Storing a large file allocates and frees buffers of 1-8 MiB by the
    dozen per file: each ``pread`` result, each 8 MiB segment, its body and
    its payload. glibc serves them with a fresh ``mmap`` each (its dynamic
    threshold is per arena and pool threads start below it), so every byte
    was zero-filled by a page fault and unmapped again: measured through
    latencyfs, a third of a 128 MiB file's CPU. From heaps, a freed buffer's
    pages are reused as they are. What a process keeps is bounded by its
    peak (the read-ahead budget and the uploads in flight) plus
    TRIM_THRESHOLD per heap top. Set once by a worker process of the local
    pool (:func:`clfsload.execute.pool._init_process`), which stores data for
    its whole life; never in the driver, a library caller's process or a
    Dask worker, which are not the loader's own to tune.
    """
    _mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD (also turns off glibc's dynamic threshold)
    _mallopt(-1, TRIM_THRESHOLD)  # M_TRIM_THRESHOLD


class _ProcessSettings:
    """The process-wide settings pool threads want (GIL switch interval, malloc arenas), held while any pool runs.

    The first pool to start saves the process's values and sets them; the
    last to shut down puts them back, so a library caller's process is left
    as it was once a walk (the dry run, verify) has ended. A worker
    process's pool runs for the life of the process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._interval = 0.0

    def take(self) -> None:
        """A pool starts."""
        with self._lock:
            self._users += 1
            if self._users == 1:
                self._interval = sys.getswitchinterval()
                _set_malloc_arenas(ARENAS)
                # A thread whose read returned waits for the GIL up to the switch interval
                # (5 ms) while the consumer encodes: at 0.5-2 ms per source round trip
                # that wait would be the pipeline's pace. 0.5 ms keeps them moving.
                sys.setswitchinterval(min(self._interval, SWITCH_INTERVAL))

    def give_back(self) -> None:
        """A pool has shut down."""
        with self._lock:
            self._users -= 1
            if self._users == 0:
                sys.setswitchinterval(self._interval)
                _set_malloc_arenas(0)  # arenas made meanwhile stay; new ones follow the default again


_SETTINGS = _ProcessSettings()


#: calls a pool thread runs in a row on one of the node's slots while more are queued
SLOT_RUN = 8
_IDLE = object()  # a pool thread found its queue empty


class _Threads:
    """A fixed set of daemon threads running submitted calls, started at once with small stacks.

    Where no thread can be started (a command under a tight RLIMIT_AS or
    RLIMIT_NPROC), calls run on the caller's thread: slower, never an error.
    """

    def __init__(self, count: int, slots: Any = None) -> None:
        self._queue: "queue.SimpleQueue[Optional[Tuple[Future, Callable[..., Any], tuple]]]" = queue.SimpleQueue()
        self._slots = slots  # the node's (NodeSlots.semaphore): each call runs holding one
        self._threads: List[threading.Thread] = []
        self._settings = True  # holds _SETTINGS until shutdown
        _SETTINGS.take()
        with _stack_lock:
            old = threading.stack_size(THREAD_STACK)
            try:
                for i in range(count):
                    thread = threading.Thread(target=self._run, name="clfsload-source-%d" % i, daemon=True)
                    try:
                        thread.start()
                    except RuntimeError:  # can't start new thread: make do with those running
                        break
                    self._threads.append(thread)
            finally:
                threading.stack_size(old)

    def submit(self, fn: Callable[..., Any], *args: Any) -> "Future[Any]":
        """``fn(*args)`` on a thread of the set (on this one if there is none); its future."""
        future: "Future[Any]" = Future()
        if not self._threads:
            with self._slots if self._slots is not None else contextlib.nullcontext():
                _run_call(future, fn, args)
            return future
        self._queue.put((future, fn, args))
        return future

    def _run(self) -> None:
        if self._slots is not None:
            return self._run_on_slots()
        while True:
            item = self._queue.get()
            if item is None:
                return
            _run_call(*item)

    def _run_on_slots(self) -> None:
        """The loop of a thread on the node's slots: one slot held for up to SLOT_RUN calls in a row.

        Taking and giving back a slot for each call woke a thread waiting for
        one (in this process or another) at every call once the node's cap
        was reached: a futex wake and a context switch per source operation.
        Keeping it while calls are queued here, up to SLOT_RUN of them, makes
        that one per run; the cap holds all the same (a slot is held only
        while a call runs or the next one is taken from the queue).
        """
        get, slots = self._queue.get, self._slots
        item = get()
        while item is not None:
            slots.acquire()
            try:
                for _ in range(SLOT_RUN):
                    _run_call(*item)
                    try:
                        item = get(False)
                    except queue.Empty:
                        item = _IDLE
                        break
                    if item is None:
                        break
            finally:
                slots.release()
            if item is _IDLE:
                item = get()  # waits for work without a slot

    def shutdown(self) -> None:
        """End the threads once the calls queued before are done (without waiting for them)."""
        for _ in self._threads:
            self._queue.put(None)
        if self._settings:
            self._settings = False
            _SETTINGS.give_back()


def _run_call(future: "Future[Any]", fn: Callable[..., Any], args: tuple) -> None:
    """Run a queued call into its future, unless the future was cancelled meanwhile."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args)
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


_shared: Dict[Tuple[int, int, float], SourceReads] = {}
_shared_lock = threading.Lock()
#: how this process reports stuck operations: "stuck" (path, op, waited) and "count" (stuck now);
#: None logs here. A worker process sends both to the driver (:mod:`clfsload.execute.pool`).
REPORTERS: Dict[str, Optional[Callable[..., None]]] = {"stuck": None, "count": None}
#: stuck operations of the worker processes, by process id (the driver's view, kept by the pool)
REMOTE_STUCK: Dict[int, int] = {}


def shared(depth: int, budget: int, timeout: float) -> SourceReads:
    """This process's pool for these limits (one per process: the units it runs share it).

    In a worker process of the local pool its operations draw from the node's
    slots (:func:`use_node_slots`); elsewhere (a Dask worker, a library
    caller's process) ``depth`` is the cap.
    """
    key = (depth or DEFAULT_CONCURRENCY, budget or DEFAULT_BUDGET, timeout if timeout else DEFAULT_TIMEOUT)
    with _shared_lock:
        reads = _shared.get(key)
        if reads is None:
            reads = _shared[key] = SourceReads(*key, on_stuck=REPORTERS["stuck"], on_count=REPORTERS["count"],
                                               slots=_node_slots)
        return reads


#: pools of walks running in this process (:func:`walk_reads`), counted by :func:`stuck_operations`
_walks: List[SourceReads] = []


@contextlib.contextmanager
def walk_reads(depth: int = 0, timeout: float = 0) -> Iterator[SourceReads]:
    """A pool for one walk of the source in this process (the dry run, ``verify``), shut down when it ends.

    Unlike :func:`shared` (a worker process's pool, for its life), its
    threads and hang watch end with the walk and the process-wide settings
    they took are put back, so a library caller's process does not keep them.
    """
    reads = SourceReads(depth or DEFAULT_CONCURRENCY, DEFAULT_BUDGET, timeout if timeout else DEFAULT_TIMEOUT,
                        on_stuck=REPORTERS["stuck"], on_count=REPORTERS["count"])
    with _shared_lock:
        _walks.append(reads)
    try:
        yield reads
    finally:
        with _shared_lock:
            _walks.remove(reads)
        reads.shutdown()


def stuck_operations() -> int:
    """Source operations outstanding past their timeout now: this process's and its worker processes'."""
    with _shared_lock:
        pools = list(_shared.values()) + _walks
    return sum(reads.watch.stuck() for reads in pools) + sum(REMOTE_STUCK.values())


# --- ahead of an in-order consumer ----------------------------------------------------------


class RunAhead:
    """One kind of operation over many paths, on threads that never take the GIL, taken in order.

    The compiled :func:`clfsload._native.sourceio.run_ahead` with this
    pool's limits: the process's C threads (as many as its Python pool
    threads, plus one), at most twice ``depth`` items started and not yet
    taken, each holding one of the node's slots while it runs. Through a slow
    source an ``lstat`` or a small file's open and read on a Python pool
    thread costs two hand-overs and a contended GIL each (about 50 futex
    calls per small file at 0.5 ms); here a directory's worth costs one
    hand-over, and the consumer waits, the GIL released, only for a result
    not back yet. Bytes held ahead are bounded by the window: each item of
    ``"open+read"`` holds less than ``limit`` bytes. Items running show in
    the hang watch as operations of their own; each duration feeds the
    latency estimate of ``op`` when the run is closed.
    """

    def __init__(self, reads: "SourceReads", op: str, paths: Sequence[bytes], limit: int = 0) -> None:
        self.reads = reads
        self.op = op
        self.run = sourceio.run_ahead(op, paths, limit, reads.threads + 1, reads.slots, 2 * reads.depth, SLOT_RUN,
                                      AHEAD_LATENCY, reads.run_inline.get(op, False))
        self._token = reads.watch.add_run(op, self.run)

    def take(self, index: int) -> Any:
        """Item ``index``'s result, or its OSError raised (those before it not taken are dropped)."""
        return self.run.take(index)

    def close(self) -> None:
        """Drop what was not taken; the run's fastest operation feeds the latency estimate."""
        self.run.close()
        self.reads.run_inline[self.op] = self.run.inline()  # the next run of this kind starts so
        self.reads.watch.remove_run(self._token)
        took = self.run.fastest()
        if took is not None:
            self.reads.learn(self.op, took)

    def __enter__(self) -> "RunAhead":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class OrderedAhead:
    """Operations run ahead of a consumer that takes their results in order.

    ``items`` are ``(key, op, fn, args, nbytes)``: ``nbytes`` is taken from
    the budget while the result waits for its consumer. At most twice the
    pool's depth are submitted ahead, fewer when the budget is spent; the
    next one the consumer needs is always submitted. ``close`` drops what
    the consumer never took, handing each dropped result to ``discard``
    (which closes a descriptor an operation left open).
    """

    def __init__(self, reads: SourceReads, items: List[Tuple[Any, str, Callable[..., Any], tuple, int]],
                 discard: Optional[Callable[[Any], None]] = None):
        self.reads = reads
        self._items = collections.deque(items)
        self._ahead: Deque[Tuple[Any, "Future[Any]", int]] = collections.deque()
        self._window = 2 * reads.depth
        self._discard = discard
        #: the keys not yet taken nor dropped: take() of any other is refused before anything is dropped
        self._keys = {item[0] for item in items}

    def _fill(self) -> None:
        while self._items and len(self._ahead) < self._window:
            key, op, fn, args, nbytes = self._items[0]
            if not self.reads.worth_ahead(op):
                break  # fast: the consumer does it itself (take returns None)
            if not self.reads.reserve(nbytes, force=not self._ahead):
                break
            self._items.popleft()
            self._ahead.append((key, self.reads.submit(op, key, fn, *args), nbytes))

    def futures(self) -> Iterator["Future[Any]"]:
        """Every item's future, in order (the budget is given back as each is yielded).

        An item not worth issuing ahead is run on the consumer's thread as it is taken.
        """
        try:
            while True:
                self._fill()
                if self._ahead:
                    _, future, nbytes = self._ahead.popleft()
                    self.reads.release(nbytes)
                    yield future
                elif self._items:
                    key, op, fn, args, _ = self._items.popleft()
                    yield _run_here(self.reads, op, key, fn, args)
                else:
                    return
        finally:
            self.close()

    def take(self, key: Any) -> Optional["Future[Any]"]:
        """The future of ``key`` if it was issued ahead, else None (the consumer runs it itself).

        Keys are taken in order; items before ``key`` not taken are dropped.
        A key that is not among those still to take (never given, or taken
        or passed already) raises KeyError and drops nothing: it would
        otherwise flush the rest of the unit's reads ahead.
        """
        keys = self._keys
        if key not in keys:
            raise KeyError("%r is not among the operations still to take ahead" % (key,))
        ahead = self._ahead
        while ahead and ahead[0][0] != key:
            dropped = ahead.popleft()
            keys.discard(dropped[0])
            self._drop(*dropped)
        keys.discard(key)
        if ahead:
            _, future, nbytes = ahead.popleft()
            self.reads.release(nbytes)
            self._fill()
            return future
        items = self._items
        while items:  # not issued ahead (fast, or out of budget): it and those before leave the queue
            passed = items.popleft()[0]
            keys.discard(passed)
            if passed == key:
                break
        self._fill()
        return None

    def _drop(self, key: Any, future: "Future[Any]", nbytes: int) -> None:
        self.reads.release(nbytes)
        if future.cancel() or self._discard is None:
            return
        discard = self._discard

        def done(f: "Future[Any]") -> None:
            if f.exception() is None:
                discard(f.result())

        future.add_done_callback(done)

    def close(self) -> None:
        """Drop every result not taken (cancelled, or discarded when it comes)."""
        self._items.clear()
        self._keys.clear()
        while self._ahead:
            self._drop(*self._ahead.popleft())


class AheadReader:
    """A sequential reader of a descriptor whose reads run ahead as parallel ``pread``s.

    Reads behave like ``os.read`` on a descriptor at the current offset:
    up to ``size`` bytes, fewer only where a read came back short, ``b""``
    at end of file. Reads ahead cover ``[pos, end)`` in ``CHUNK`` pieces
    (``end``: the size known when it was made; past it, and after any short
    read, each read is one plain ``pread`` at the current offset, as a
    stream would do). Nothing is read before the first :meth:`read`, so a
    caller's ``fstat`` taken before it brackets every byte read. Call
    :meth:`close` before closing the descriptor: it waits for reads running
    on it, so a descriptor number is never reused under a read.
    """

    def __init__(self, reads: SourceReads, fd: int, end: int, pos: int = 0, path: Any = b""):
        self.reads = reads
        self.fd = fd
        self.end = end
        self.path = path
        self.pos = pos
        self._next = pos  # offset of the next read ahead to submit
        self._ahead: Deque[Tuple[int, int, "Future[bytes]"]] = collections.deque()  # (offset, size, future)
        self._plain = False  # a short read was seen: no more reads ahead
        self._buf = b""  # the part of a piece read ahead not yet returned (it starts at ``pos``)
        self._window = 2 * reads.depth

    def seek(self, pos: int, whence: int = 0) -> int:
        """Move to ``pos`` (from the start only); reads ahead are dropped."""
        assert whence == 0
        self._drop_all()
        self._buf = b""
        self.pos = self._next = pos
        self._plain = False
        return pos

    def _fill(self) -> None:
        while not self._plain and self._next < self.end and len(self._ahead) < self._window:
            size = min(CHUNK, self.end - self._next)
            if not self.reads.reserve(size, force=not self._ahead):
                break
            self._ahead.append((self._next, size, self.reads.submit("read", self.path, os.pread, self.fd, size,
                                                                    self._next)))
            self._next += size

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes at the current offset (all that is left for -1)."""
        if size is None or size < 0:
            parts = []
            while True:
                part = self.read(CHUNK)
                if not part:
                    return b"".join(parts)
                parts.append(part)
        if self._buf:  # the rest of a piece read ahead, taken in part before
            data, self._buf = self._buf[:size], self._buf[size:]
            self.pos += len(data)
            return data
        reads = self.reads
        if (reads.read_eagerly and reads.threads > 0) or reads.worth_ahead("read"):
            self._fill()
        if not self._ahead or self._ahead[0][0] != self.pos:
            self._drop_all()
            data = self.reads.call("read", self.path, os.pread, self.fd, size, self.pos)
            self.pos += len(data)
            return data
        _, asked, future = self._ahead.popleft()
        self.reads.release(asked)
        data = future.result()  # an OSError comes out here as it would from the read itself
        if len(data) < asked:
            self._plain = True  # the end moved: from here on, plain reads at the offset, as a stream
            self._drop_all()
        if len(data) > size:
            data, self._buf = data[:size], data[size:]
        self.pos += len(data)
        self._next = max(self._next, self.pos + len(self._buf))
        return data

    def _drop_all(self) -> None:
        while self._ahead:
            _, asked, future = self._ahead.popleft()
            if not future.cancel():
                try:
                    future.result()  # a read running on the descriptor ends before it may be closed
                except BaseException:
                    pass
            self.reads.release(asked)
        self._next = self.pos + len(self._buf)

    def close(self) -> None:
        """Drop reads ahead, waiting for those running (call before closing the descriptor)."""
        self._drop_all()


def _run_here(reads: SourceReads, op: str, key: Any, fn: Callable[..., Any], args: tuple) -> "Future[Any]":
    """``fn(*args)`` run now on this thread, as a completed future."""
    future: "Future[Any]" = Future()
    try:
        future.set_result(reads.call(op, key, fn, *args))
    except BaseException as exc:
        future.set_exception(exc)
    return future


__all__ = [
    "AheadReader",
    "CHUNK",
    "DEFAULT_BUDGET",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_TIMEOUT",
    "HangWatch",
    "NodeSlots",
    "OrderedAhead",
    "REMOTE_STUCK",
    "REPORTERS",
    "SourceReads",
    "describe_stuck",
    "per_process",
    "shared",
    "stuck_operations",
    "use_node_slots",
    "walk_reads",
]
