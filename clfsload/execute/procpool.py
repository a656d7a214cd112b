"""A small process pool whose workers each run several calls at once, a thread per slot.

:class:`concurrent.futures.ProcessPoolExecutor` runs one call at a time in
each process. The loader's units mostly wait (for a server far away, for a
slow source), and what a process shares between them (its uploads' event
loop and byte budget, its source-read threads) is meant to be kept busy by
more than one unit. So each worker here runs up to ``slots`` calls at once,
and each call's result comes back as soon as it ends: no call waits behind
a slower sibling.

What it keeps of ``ProcessPoolExecutor``:

* the workers start from a given multiprocessing context (the loader's
  forkserver) and run ``initializer(*initargs)`` first; an initializer that
  raises fails every call with its exception;
* a worker that dies (killed, or exiting on its own) breaks the pool: every
  call not finished fails with :class:`BrokenProcessPool`, later submits
  raise it, the other workers are stopped (an initializer that raised breaks
  it the same way, with its exception);
* ``shutdown(cancel=True)`` drops the calls not yet handed to a worker.

One duplex pipe per worker carries the calls one way and the results the
other; a receiver thread in the parent waits on the pipes and the process
sentinels together (:func:`multiprocessing.connection.wait`), records each
result and hands the worker its next call. The parent keeps the queue: a
worker holds at most ``slots`` calls, so a queued call goes to whichever
worker frees a slot first and a cancelled one never reached a worker.
"""

import collections
import itertools
import logging
import os
import queue
import threading
import traceback
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

__all__ = ["BrokenProcessPool", "RemoteTraceback", "ThreadedProcessPool"]

log = logging.getLogger("clfsload")


def _dumps(obj: Any) -> bytes:
    """``obj`` pickled as ``Connection.send`` pickles it (``recv`` reads it back)."""
    return bytes(ForkingPickler.dumps(obj))

#: what a worker that dies leaves on every call not finished (ProcessPoolExecutor's words)
BROKEN = ("A process in the process pool was terminated abruptly while the future was running or pending.")


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, as text: the cause of the exception the caller gets."""

    def __str__(self) -> str:
        return self.args[0] if self.args else ""


class _Worker:
    """The parent's side of one worker process: its pipe, its process, the calls it holds."""

    __slots__ = ("process", "conn", "held", "stopping", "gone")

    def __init__(self, process, conn) -> None:
        self.process = process
        self.conn = conn
        self.held: Dict[int, Future] = {}  # calls sent and not answered
        self.stopping = False  # told to stop: it exits once it has answered what it holds
        self.gone = False


class ThreadedProcessPool:
    """``processes`` worker processes of ``context``, each running up to ``slots`` calls at once."""

    def __init__(self, processes: int, slots: int, context, initializer: Optional[Callable[..., None]] = None,
                 initargs: Tuple[Any, ...] = ()):
        if processes < 1 or slots < 1:
            raise ValueError("a pool needs at least one process and one slot")
        self.slots = slots
        self._lock = threading.Lock()
        self._queued: Deque[Tuple[int, Callable[..., Any], Tuple[Any, ...], Future]] = collections.deque()
        self._ids = itertools.count()
        self._broken: Optional[BaseException] = None
        self._closed = False
        self._workers: List[_Worker] = []
        try:
            for _ in range(processes):
                parent, child = context.Pipe(duplex=True)
                # daemon: a parent that exits without shutdown() ends them rather than waits on them
                process = context.Process(target=_serve, args=(child, slots, initializer, initargs),
                                          name="clfsload-worker", daemon=True)
                process.start()
                child.close()  # the worker's end: EOF here once the worker is gone
                self._workers.append(_Worker(process, parent))
        except BaseException:
            for worker in self._workers:
                worker.process.kill()
                worker.process.join()
            raise
        self._receiver = threading.Thread(target=self._receive, name="clfsload-pool-results", daemon=True)
        self._receiver.start()

    # -- the caller's side --------------------------------------------------

    def submit(self, fn: Callable[..., Any], *args: Any) -> "Future[Any]":
        """Queue ``fn(*args)`` for a worker; returns its future.

        Once the pool is broken, raises what broke it: BrokenProcessPool, or
        the exception of a worker's initializer.
        """
        future: "Future[Any]" = Future()
        with self._lock:
            if self._broken is not None:
                raise self._broken
            if self._closed:
                raise RuntimeError("cannot submit after shutdown")
            self._queued.append((next(self._ids), fn, args, future))
            self._dispatch()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the workers once they have run what they hold and what is queued.

        With ``cancel_futures`` the queued calls are cancelled and the workers
        holding calls are killed: their futures fail with BrokenProcessPool.
        """
        with self._lock:
            self._closed = True
            if cancel_futures:
                while self._queued:
                    self._queued.popleft()[3].cancel()
                # The caller is stopping (an error, Ctrl-C) and takes no more results: a
                # worker holding units (up to ``slots``, a big directory or a 1 GiB range
                # each) is ended now rather than waited for. Nothing it did since is
                # recorded, as after a kill; their futures fail with BrokenProcessPool.
                for worker in self._workers:
                    if worker.held and not worker.gone:
                        worker.process.kill()
            self._dispatch()  # tells the idle workers to stop when nothing is queued
        if wait:
            self._receiver.join()
            for worker in self._workers:
                worker.process.join()

    # -- the receiver thread ------------------------------------------------

    def _dispatch(self) -> None:
        """Hand queued calls to workers with a free slot; tell idle workers to stop after shutdown. Under the lock."""
        if self._broken is not None:
            return
        for worker in sorted(self._workers, key=lambda w: len(w.held)):
            while self._queued and len(worker.held) < self.slots and not worker.gone:
                call_id, fn, args, future = self._queued.popleft()
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    data = _dumps((call_id, fn, args))
                except Exception as exc:  # noqa: BLE001 - the call could not be pickled: its own failure
                    future.set_exception(exc)
                    continue
                worker.held[call_id] = future
                try:
                    worker.conn.send_bytes(data)
                except (OSError, ValueError):  # its pipe is closed: the receiver sees the worker gone
                    break
                except BaseException:
                    # Cut short (Ctrl-C lands between a long message's header and its body):
                    # the pipe may hold half a message, which the worker cannot read. It is
                    # lost with the calls it holds, as if it had died; the receiver sees it go.
                    worker.process.kill()
                    raise
            if self._closed and not self._queued and not worker.held and not worker.stopping and not worker.gone:
                worker.stopping = True
                try:
                    worker.conn.send(None)
                except (OSError, ValueError):
                    pass

    def _receive(self) -> None:
        """Record each result as it comes; a worker gone breaks the pool. Ends when every worker is gone."""
        try:
            self._receive_all()
        except BaseException as exc:  # noqa: BLE001 - a bug here must not leave the caller waiting for ever
            log.debug("the pool's receiver failed", exc_info=True)  # the caller gets it from its futures
            self._break(exc)
            for worker in self._workers:
                worker.conn.close()

    def _receive_all(self) -> None:
        by_conn = {worker.conn: worker for worker in self._workers}
        by_sentinel = {worker.process.sentinel: worker for worker in self._workers}
        while by_conn or by_sentinel:
            for ready in wait(list(by_conn) + list(by_sentinel)):
                worker = by_conn.get(ready) or by_sentinel.get(ready)  # type: ignore[arg-type]
                if worker is None or worker.gone:
                    continue
                if ready is worker.conn and self._take(worker):
                    continue  # a result: the worker lives on
                # EOF on its pipe, or its process ended: read what it sent before it went
                while self._take(worker, poll=True):
                    pass
                worker.gone = True
                by_conn.pop(worker.conn, None)
                by_sentinel.pop(worker.process.sentinel, None)
                self._lost(worker)

    def _take(self, worker: _Worker, poll: bool = False) -> bool:
        """Receive and record one message of ``worker``; False on EOF (or, with ``poll``, nothing waiting)."""
        try:
            if poll and not worker.conn.poll():
                return False
            message = worker.conn.recv()
        except (EOFError, OSError):
            return False
        kind = message[0]
        if kind == "init-failed":  # the initializer raised: every call fails with it
            self._break(_with_remote(message[1], message[2]))
            return True
        _, call_id, ok, value, text = message
        with self._lock:
            future = worker.held.pop(call_id, None)
            self._dispatch()  # its slot is free: the next queued call goes now
        if future is not None:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(_with_remote(value, text))
        return True

    def _lost(self, worker: _Worker) -> None:
        """A worker is gone: an orderly stop, or the pool is broken."""
        with self._lock:
            orderly = worker.stopping and not worker.held
        if not orderly:
            self._break(BrokenProcessPool(BROKEN))
        worker.conn.close()

    def _break(self, error: BaseException) -> None:
        """Fail every call not finished with ``error``; stop the workers (the pool takes no more)."""
        with self._lock:
            if self._broken is None:
                self._broken = error
            failed = [future for worker in self._workers for future in worker.held.values()]
            failed += [entry[3] for entry in self._queued if entry[3].set_running_or_notify_cancel()]
            self._queued.clear()
            for worker in self._workers:
                worker.held.clear()
                worker.stopping = True
        for worker in self._workers:
            if worker.process.exitcode is None:
                worker.process.kill()  # it would run on without a parent to take its results
        for future in failed:
            if not future.done():
                future.set_exception(self._broken)


def _with_remote(error: BaseException, text: str) -> BaseException:
    """``error`` as raised in a worker, its traceback there as its cause (what ProcessPoolExecutor does)."""
    if text:
        error.__cause__ = RemoteTraceback('\n"""\n%s"""' % text)
    return error


# -- the worker's side ------------------------------------------------------------


def _serve(conn, slots: int, initializer: Optional[Callable[..., None]], initargs: Tuple[Any, ...]) -> None:
    """A worker process: run the initializer, then each call received in one of ``slots`` threads."""
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:  # noqa: BLE001 - the parent fails the calls with it
            _send(conn, threading.Lock(), ("init-failed", exc, traceback.format_exc()))
            return
    calls: "queue.SimpleQueue[Optional[tuple]]" = queue.SimpleQueue()
    sending = threading.Lock()
    # daemon: a main thread that ends in error must not wait on them
    threads = [threading.Thread(target=_slot, args=(calls, conn, sending), name="clfsload-unit-%d" % k, daemon=True)
               for k in range(slots)]
    for thread in threads:
        thread.start()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break  # the parent is gone
        except BaseException:  # noqa: BLE001 - a message it cannot read: its call is unknown
            # The parent would wait for ever on a call this worker never names: end the
            # process, so the parent sees it gone and fails what it held (BrokenProcessPool).
            os._exit(1)
        if message is None:  # stop: nothing more will come, and this worker holds nothing
            break
        calls.put(message)
    for _ in threads:
        calls.put(None)
    for thread in threads:
        thread.join()
    conn.close()


def _slot(calls: "queue.SimpleQueue[Optional[tuple]]", conn, sending: threading.Lock) -> None:
    """One slot of a worker: run calls one after another, send each result as it ends."""
    while True:
        message = calls.get()
        if message is None:
            return
        call_id, fn, args = message
        try:
            result = ("done", call_id, True, fn(*args), "")
        except BaseException as exc:  # noqa: BLE001 - the parent raises it from the call's future
            result = ("done", call_id, False, exc, traceback.format_exc())
        del message, fn, args
        _send(conn, sending, result)


def _send(conn, sending: threading.Lock, message: tuple) -> None:
    """Send ``message`` to the parent; one that cannot be pickled goes as the error saying so."""
    try:
        with sending:
            conn.send(message)
    except (EOFError, OSError):
        pass  # the parent is gone: the driver watch ends this process
    except Exception as exc:  # noqa: BLE001 - pickling failed, nothing was written
        failed = RuntimeError("a worker's result could not be sent back: %s: %s" % (type(exc).__name__, exc))
        with sending:
            conn.send(message[:2] + (False, failed, "") if message[0] == "done" else ("init-failed", failed, ""))
