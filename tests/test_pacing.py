"""Turn pacing of the upload loop (clfsload.work.pacing) through the real Uploader and event loop."""

import asyncio
import random
import time

from clfsload.clfs.objects import Blob
from clfsload.work.upload import Uploader, first_error


class PacedTarget:
    """Answers each put after a random delay; records when the answers were handled."""

    def __init__(self, low, high, fail=()):
        self.low, self.high = low, high
        self.fail = set(fail)
        self.handled = []
        self.random = random.Random(7)

    async def put(self, name, payload):
        await asyncio.sleep(self.random.uniform(self.low, self.high))
        self.handled.append(time.monotonic())
        if name in self.fail:
            raise OSError("no space")

    async def close(self):
        pass


def load(target, count, pace, max_in_flight=64):
    async def opener():
        return target

    uploader = Uploader(opener, compress=False, max_in_flight=max_in_flight, pace=pace)
    try:
        futures = [uploader.submit(Blob("%032x" % i, b"x" * 64)) for i in range(count)]
        error = first_error(futures)
    finally:
        uploader.close()
    return uploader, error


def bursts(times, gap=0.001):
    """How many groups the handling times fall in, a group ending at a gap longer than ``gap``."""
    times = sorted(times)
    return 1 + sum(1 for a, b in zip(times, times[1:]) if b - a > gap)


def test_slow_answers_are_handled_in_batches_only_when_pacing():
    # 64 in flight, answers after 0.5-1.5 s: about 64 answers a second, one
    # every 15 ms on average, each on a loop turn of its own unless paced.
    count = 200
    paced, error = load(PacedTarget(0.5, 1.5), count, pace=True)
    assert error is None and paced.blobs == count
    unpaced, error = load(PacedTarget(0.5, 1.5), count, pace=False)
    assert error is None and unpaced.blobs == count

    assert paced.pacer.naps > 0 and unpaced.pacer.naps == 0
    paced_bursts = bursts(paced.target.handled)
    unpaced_bursts = bursts(unpaced.target.handled)
    assert paced_bursts < 0.4 * count, (paced_bursts, unpaced_bursts)
    assert unpaced_bursts > 0.6 * count, (paced_bursts, unpaced_bursts)
    # The period follows the request time (about 1 s): a sixteenth of it.
    assert 0.5 <= paced.pacer.mean_request_time <= 1.6
    assert paced.pacer.period() <= paced.pacer.max_period


def test_quick_answers_and_shallow_queues_are_never_paced():
    quick, error = load(PacedTarget(0.001, 0.003), 300, pace=True)
    assert error is None
    assert quick.pacer.naps == 0  # a sixteenth of ~2 ms is under the 2 ms minimum period
    shallow, error = load(PacedTarget(0.3, 0.5), 40, pace=True, max_in_flight=8)
    assert error is None
    assert shallow.pacer.naps == 0  # 8 in flight: under the 16 that arm the pacer


def test_failed_requests_leave_the_in_flight_count_and_the_pacer_stands_down():
    failing = {"%032x" % i for i in range(0, 120, 7)}
    uploader, error = load(PacedTarget(0.2, 0.6, fail=failing), 120, pace=True)
    assert isinstance(error, OSError)
    assert uploader.blobs == 120 - len(failing)
    assert uploader.pacer.in_flight == 0
    assert not uploader.pacer._armed  # nothing left to pace: the loop waits on its sockets again
