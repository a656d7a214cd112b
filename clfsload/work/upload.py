"""Sealing blobs and storing them, with many requests in flight or none.

Two uploaders with one interface (``submit`` returns a future, ``close``):

* :class:`Uploader`, for network targets: the caller's thread seals each
  blob (envelope, compression, checksum); an event loop in a thread of its
  own stores them through the asyncio flavour of the target, up to
  ``max_in_flight`` requests at once. For Azure with a SAS (or an account
  key) that is the target's bare-HTTP data path, which costs a fraction of
  the SDK's client CPU per Put Blob. Memory stays bounded:
  :meth:`Uploader.submit` blocks while more than ``max_bytes`` of payload wait.
  While a slow server holds many of them, the loop's turns are spaced out
  so it handles answers in batches (:mod:`clfsload.work.pacing`).
* :class:`DirectUploader`, for the local-folder target: a write there is a
  few system calls, cheaper than handing the blob to another thread, so the
  caller's thread writes it at once and gets back a future already done.
"""

import collections
import threading
from concurrent.futures import Future, wait
from typing import TYPE_CHECKING, Awaitable, Callable, Iterable, Optional, Tuple, Union

from ..clfs.objects import Blob, Sealed, seal
from .pacing import TurnPacer
from ..targets.base import AsyncBlobTarget, BlobTarget

if TYPE_CHECKING:  # imported where a loop is made (an Uploader); a DirectUploader never needs asyncio
    import asyncio

Opener = Callable[[], Awaitable[AsyncBlobTarget]]


def new_event_loop(uvloop: bool = True) -> "asyncio.AbstractEventLoop":
    """uvloop's event loop when it is installed (and ``uvloop``), else asyncio's.

    uvloop runs the loop in C (libuv): against Azurite a Put Blob through
    :mod:`clfsload.targets.wire` costs about 30% less client CPU on it.
    ``CLFSLOAD_NO_UVLOOP=1`` (:class:`clfsload.settings.Switches`) passes
    ``uvloop=False``.
    """
    import asyncio

    if not uvloop:
        return asyncio.new_event_loop()
    try:
        import uvloop as _uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return _uvloop.new_event_loop()


class Uploader:
    """PUTs sealed blobs concurrently from one event loop; counts what it stored.

    ``pace=False`` (``CLFSLOAD_NO_PACING=1``) lets the loop wake for every
    answer; ``uvloop=False`` (``CLFSLOAD_NO_UVLOOP=1``) runs asyncio's own
    loop. The worker passes both from :class:`clfsload.settings.Switches`.
    """

    def __init__(self, opener: Opener, compress: bool, max_in_flight: int = 64, max_bytes: int = 256 << 20,
                 pace: bool = True, uvloop: bool = True):
        self.compress = compress
        self._max_bytes = max_bytes
        self._waiting = 0  # payload bytes submitted and not yet stored
        self._cond = threading.Condition()
        #: (name, payload, size, future) handed over, not yet started on the loop
        self._queue: "collections.deque[Tuple[str, bytes, int, Future[None]]]" = collections.deque()
        self._wake_pending = False
        self._max_in_flight = max(1, max_in_flight)
        #: consumer tasks: each stores queued blobs one after another (loop thread only)
        self._consumers = 0
        self._tasks: "set[asyncio.Task[None]]" = set()
        self.blobs = 0
        self.payload_bytes = 0
        self._loop = new_event_loop(uvloop)
        #: times the requests and paces the loop's turns; ``pace=False`` only times them
        self.pacer = TurnPacer(self._loop, enabled=pace)
        self._thread = threading.Thread(target=self._loop.run_forever, name="clfsload-uploads", daemon=True)
        self._thread.start()
        try:
            self.target = self._call(opener())
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, coro):
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def submit(self, blob: Union[Blob, Sealed]) -> "Future[None]":
        """Seal ``blob`` here (unless it comes sealed) and store it from the event loop; returns the PUT's future."""
        sealed = blob if isinstance(blob, Sealed) else seal(blob, self.compress)
        size = len(sealed.payload)
        with self._cond:
            # One payload larger than the budget still goes, alone.
            while self._waiting and self._waiting + size > self._max_bytes:
                self._cond.wait()
            self._waiting += size
        future: "Future[None]" = Future()
        self._queue.append((sealed.name, sealed.payload, size, future))
        # One wake-up of the loop serves every blob queued before it drains:
        # the flag is cleared before the drain, so a blob queued meanwhile is
        # either drained now or brings its own wake-up.
        if not self._wake_pending:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._drain)
        return future

    def _drain(self) -> None:
        """Loop thread: start consumers for the queued blobs, up to ``max_in_flight`` in all.

        A consumer takes blobs from the queue until it is empty, so a PUT
        that ends starts the next one in the same step: no task and no
        semaphore per blob. Only this thread takes from the queue; a blob
        queued after every consumer saw it empty brings a drain of its own
        (or finds one pending, which runs after it), so none is left behind.
        """
        self._wake_pending = False
        start = min(len(self._queue), self._max_in_flight - self._consumers)
        for _ in range(start):
            self._consumers += 1
            task = self._loop.create_task(self._consume())
            self._tasks.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._tasks.discard)

    async def _consume(self) -> None:
        queue = self._queue
        try:
            while queue:
                await self._put(*queue.popleft())
        finally:
            self._consumers -= 1

    async def _put(self, name: str, payload: bytes, size: int, future: "Future[None]") -> None:
        started = self.pacer.started()
        try:
            await self.target.put(name, payload)
        except BaseException as exc:  # noqa: BLE001 - handed to the submitter through its future
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self.blobs += 1  # only the loop thread writes these
            self.payload_bytes += size
            future.set_result(None)
        finally:
            self.pacer.finished(started)
            with self._cond:
                self._waiting -= size
                self._cond.notify_all()

    def sync(self) -> None:
        """Make every blob stored so far durable: the target's own sync, on the loop.

        For Azure it does nothing (an acknowledged Put Blob is durable at the
        service, and a done future is one); a local folder fsyncs.
        """
        self._call(self.target.sync())

    def close(self) -> None:
        """Close the target and stop the loop (every submitted PUT has been awaited by then)."""
        try:
            self._call(self.target.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


#: The future of every successful direct put: done, result None. Callers only
#: read it (``exception()``), so one shared instance serves them all.
_STORED: "Future[None]" = Future()
_STORED.set_result(None)


class DirectUploader:
    """Seals and stores each blob in the caller's thread through a blocking target.

    Same interface as :class:`Uploader`; every future it returns is already
    done (with the put's exception, if any).
    """

    def __init__(self, target: BlobTarget, compress: bool):
        self.target = target
        self.compress = compress
        self.blobs = 0
        self.payload_bytes = 0

    def submit(self, blob: Union[Blob, Sealed]) -> "Future[None]":
        """Seal (unless it comes sealed) and store ``blob`` now; returns a done future."""
        # encoding errors are the caller's, as with Uploader
        sealed = blob if isinstance(blob, Sealed) else seal(blob, self.compress)
        try:
            self.target.put(sealed.name, sealed.payload)
        except Exception as exc:  # noqa: BLE001 - reported through the future, as Uploader does
            failed: "Future[None]" = Future()
            failed.set_exception(exc)
            return failed
        self.blobs += 1
        self.payload_bytes += len(sealed.payload)
        return _STORED

    def sync(self) -> None:
        """Make every blob stored so far durable (:meth:`clfsload.targets.base.BlobTarget.sync`)."""
        self.target.sync()

    def close(self) -> None:
        """Close the target."""
        self.target.close()


def first_error(futures: Iterable["Future[None]"]) -> Optional[BaseException]:
    """Wait for every future; return the first exception raised, if any.

    One wait for them all: waiting on each in turn would wake this thread
    once per completed PUT, which costs more than the PUT's own bookkeeping.
    """
    pending = list(futures)
    if not all(future.done() for future in pending):
        wait(pending)
    error: Optional[BaseException] = None
    for future in pending:
        exc = future.exception()
        if exc is not None and error is None:
            error = exc
    return error


__all__ = ["DirectUploader", "Uploader", "first_error"]
