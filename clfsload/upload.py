"""Sealing blobs and storing them with many requests in flight.

The caller's thread seals each blob (envelope, compression, checksum); an
event loop in a thread of its own stores them through the asyncio flavour of
the target, up to ``max_in_flight`` requests at once. For Azure with a SAS
(or an account key) that is the target's bare-HTTP data path, which costs a
fraction of the SDK's client CPU per Put Blob. Memory stays bounded:
:meth:`Uploader.submit` blocks while more than ``max_bytes`` of payload wait.
"""

import asyncio
import threading
from concurrent.futures import Future
from typing import Awaitable, Callable, Iterable, Optional

from .clfs.objects import Blob, seal
from .targets.base import AsyncBlobTarget

Opener = Callable[[], Awaitable[AsyncBlobTarget]]


class Uploader:
    """PUTs sealed blobs concurrently from one event loop; counts what it stored."""

    def __init__(self, opener: Opener, compress: bool, max_in_flight: int = 64, max_bytes: int = 256 << 20):
        self.compress = compress
        self._max_bytes = max_bytes
        self._waiting = 0  # payload bytes submitted and not yet stored
        self._cond = threading.Condition()
        self.blobs = 0
        self.payload_bytes = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="clfsload-uploads", daemon=True)
        self._thread.start()
        try:
            self.target = self._call(self._open(opener, max(1, max_in_flight)))
        except BaseException:
            self._stop_loop()
            raise

    async def _open(self, opener: Opener, max_in_flight: int) -> AsyncBlobTarget:
        self._slots = asyncio.Semaphore(max_in_flight)
        return await opener()

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def submit(self, blob: Blob) -> "Future[None]":
        """Seal ``blob`` here and store it from the event loop; returns the PUT's future."""
        sealed = seal(blob, self.compress)
        size = len(sealed.payload)
        with self._cond:
            # One payload larger than the budget still goes, alone.
            while self._waiting and self._waiting + size > self._max_bytes:
                self._cond.wait()
            self._waiting += size
        return asyncio.run_coroutine_threadsafe(self._put(sealed.name, sealed.payload, size), self._loop)

    async def _put(self, name: str, payload: bytes, size: int) -> None:
        try:
            async with self._slots:
                await self.target.put(name, payload)
        finally:
            with self._cond:
                self._waiting -= size
                self._cond.notify_all()
        self.blobs += 1  # only the loop thread writes these
        self.payload_bytes += size

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


def first_error(futures: Iterable["Future[None]"]) -> Optional[BaseException]:
    """Wait for every future; return the first exception raised, if any."""
    error: Optional[BaseException] = None
    for future in list(futures):
        exc = future.exception()
        if exc is not None and error is None:
            error = exc
    return error


__all__ = ["Uploader", "first_error"]
