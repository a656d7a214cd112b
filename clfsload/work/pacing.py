"""Spacing out an upload loop's turns while a slow server works through a deep queue.

An event loop wakes once for every answer that arrives on its own. Against a
server that answers slowly with many requests queued (Azurite, filled with
tens of thousands of blobs, answers a few dozen Put Blobs a second) that is a
wake-up per request, each starting on caches the server has just evicted.
Measured on a 2-core VM through :mod:`clfsload.targets.wire` on uvloop: 0.42 to
0.46 ms of client CPU per 3 KB Put Blob answered one at a time, 0.15 to 0.19 ms
with the loop sleeping 50 to 200 ms between turns; a whole load of 20,000
small files into Azurite went from 0.586 to 0.456 ms per object.

So, while at least ``min_in_flight`` requests are out, :class:`TurnPacer`
sleeps the loop's thread once per ``period``, when the loop has gone a turn
without starting or finishing a request, and the turn after the sleep handles
every answer that arrived meanwhile. After a sleep the loop turns freely for
as long as requests keep finishing or starting, so an answer's follow-ups
(its task resuming, the next request going out) are not held back by further
sleeps. The period is a share (1/16) of the mean time a request takes (from
the start of its PUT, waiting for a connection included, to its answer), at
most ``max_period`` (0.25 s):

* a server that is the bottleneck never runs dry: the requests whose answers
  wait out a sleep are a small part of those it still holds;
* a server that is not (the loop waits on the network's latency) loses about
  1/32 of its rate: an answer waits half a period on average;
* a busy loop (turns that fill the period) never sleeps;
* requests answered within 16 x ``min_period`` (32 ms), or fewer than
  ``min_in_flight`` of them out, stand the pacer down: the loop then waits
  on its sockets as usual, and nothing spins.

Everything here runs on the loop's own thread.
"""

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # asyncio is loaded where a loop runs; a local-folder load never needs it
    import asyncio

__all__ = ["TurnPacer"]

#: The period is this share of the mean request time.
SHARE = 1 / 16
#: Weight of each new request time in the running mean.
ALPHA = 1 / 16


class TurnPacer:
    """Counts the requests in flight, times them, and paces the loop's turns."""

    def __init__(self, loop: "asyncio.AbstractEventLoop", *, enabled: bool = True, min_in_flight: int = 16,
                 min_period: float = 0.002, max_period: float = 0.25) -> None:
        self._loop = loop
        #: False: only count and time the requests, never sleep
        self.enabled = enabled
        self.min_in_flight = min_in_flight
        self.min_period = min_period
        self.max_period = max_period
        #: requests started and not yet answered
        self.in_flight = 0
        #: running mean of the time a request takes, seconds (0: none timed yet)
        self.mean_request_time = 0.0
        #: turns that slept (for tests and statistics)
        self.naps = 0
        self._armed = False
        self._period_began = 0.0  # when the last sleep ended
        self._activity = 0  # requests started + finished, ever
        self._activity_seen = 0  # as of the previous turn
        self._slept_last_turn = False

    def period(self) -> float:
        """The shortest time between two turns' starts while pacing."""
        return min(self.max_period, self.mean_request_time * SHARE)

    def started(self) -> float:
        """A request goes out; returns the time to hand to :meth:`finished`."""
        self.in_flight += 1
        self._activity += 1
        now = time.monotonic()
        if (not self._armed and self.enabled and self.in_flight >= self.min_in_flight
                and self.period() >= self.min_period):
            self._armed = True
            self._period_began = now
            self._slept_last_turn = False
            self._activity_seen = self._activity
            self._loop.call_soon(self._turn)
        return now

    def finished(self, started: float) -> None:
        """The request that :meth:`started` at ``started`` was answered (or failed)."""
        self.in_flight -= 1
        self._activity += 1
        took = time.monotonic() - started
        if self.mean_request_time:
            self.mean_request_time += (took - self.mean_request_time) * ALPHA
        else:
            self.mean_request_time = took

    def _turn(self) -> None:
        """Once per loop turn while armed: sleep out the period when the loop has gone quiet."""
        period = self.period()
        if self.in_flight < self.min_in_flight or period < self.min_period:
            self._armed = False  # the loop blocks on its sockets again; started() re-arms
            return
        if self._slept_last_turn or self._activity != self._activity_seen:
            # The answers gathered by the last sleep, or their follow-ups, may
            # still have callbacks queued behind this one: let them run.
            self._slept_last_turn = False
            self._activity_seen = self._activity
        else:
            rest = period - (time.monotonic() - self._period_began)
            if rest > 0:
                time.sleep(rest)
                self.naps += 1
            self._period_began = time.monotonic()
            self._slept_last_turn = True
        self._loop.call_soon(self._turn)
