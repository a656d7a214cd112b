"""The two uploaders (clfsload.work.upload): concurrency bound, byte budget, errors through futures."""

import asyncio
import threading
import time

from clfsload.clfs.objects import Blob, seal
from clfsload.execute.pool import uploads_in_flight
from clfsload.work.upload import Uploader, first_error


class SlowTarget:
    """An async target that records its puts and how many ran at once."""

    def __init__(self, delay=0.005, fail=()):
        self.delay = delay
        self.fail = set(fail)
        self.stored = {}
        self.active = 0
        self.peak = 0
        self.closed = False

    async def put(self, name, payload):
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay)
            if name in self.fail:
                raise OSError("disk on fire")
            self.stored[name] = bytes(payload)
        finally:
            self.active -= 1

    async def close(self):
        self.closed = True


def blob(i, size=100):
    return Blob("%032x" % i, bytes([i % 256]) * size)


def test_every_blob_is_stored_sealed_with_at_most_max_in_flight_at_once():
    target = SlowTarget()

    async def opener():
        return target

    uploader = Uploader(opener, compress=True, max_in_flight=5)
    futures = [uploader.submit(blob(i)) for i in range(60)]
    assert first_error(futures) is None
    uploader.close()
    assert target.closed
    assert target.stored == {b.name: seal(b, True).payload for b in map(blob, range(60))}
    assert target.peak == 5
    assert uploader.blobs == 60
    assert uploader.payload_bytes == sum(len(p) for p in target.stored.values())


def test_a_failed_put_reaches_its_own_future_only():
    target = SlowTarget(fail={"%032x" % 3})

    async def opener():
        return target

    uploader = Uploader(opener, compress=False, max_in_flight=4)
    futures = [uploader.submit(blob(i)) for i in range(8)]
    error = first_error(futures)
    uploader.close()
    assert isinstance(error, OSError) and "disk on fire" in str(error)
    assert [i for i, f in enumerate(futures) if f.exception() is not None] == [3]
    assert uploader.blobs == 7


def test_submit_blocks_while_the_byte_budget_is_spent():
    release = threading.Event()

    class Gate(SlowTarget):
        async def put(self, name, payload):
            while not release.is_set():
                await asyncio.sleep(0.005)
            await super().put(name, payload)

    target = Gate(delay=0)

    async def opener():
        return target

    size = len(seal(blob(0, 1000), False).payload)
    uploader = Uploader(opener, compress=False, max_in_flight=10, max_bytes=2 * size)
    submitted = []

    def producer():
        for i in range(4):
            submitted.append(uploader.submit(blob(i, 1000)))

    thread = threading.Thread(target=producer)
    thread.start()
    time.sleep(0.3)
    assert len(submitted) == 2  # the third waits for room in the budget
    release.set()
    thread.join(5)
    assert len(submitted) == 4 and first_error(submitted) is None
    uploader.close()
    assert len(target.stored) == 4


def test_uploads_in_flight_follow_the_reference_thread_count_with_a_floor():
    assert uploads_in_flight(8) == 64
    assert uploads_in_flight(32) == 128
