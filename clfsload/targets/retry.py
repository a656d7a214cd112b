"""One retry layer for every storage request: exponential back-off, full jitter.

The Azure SDK's own retry policy is switched off (``retry_total=0``) in every
client the targets build, so this is the only layer (the reference nested
two, spec §6.3 and §12 item 5). Each target operation is one *attempt
function*; a failure is classified by the caller into a :class:`Failure`:

* retryable: HTTP 408, 429, 500, 502, 503, 504, connection errors and
  timeouts. The next attempt waits ``uniform(0, min(max_delay, base_delay *
  2**(n-1)))`` (full jitter), or at least the server's ``Retry-After`` (seconds
  or an HTTP date; also ``x-ms-retry-after-ms``), capped at
  ``max_retry_after``;
* anything else is raised at once.

An operation stops after ``max_attempts`` attempts or when the next wait
would end past ``total_timeout`` seconds from its start, whichever comes
first. The last failure is then raised.

Test hook: ``CLFSLOAD_TEST_RETRY``. :func:`default_retry_settings` starts
from the defaults above and overrides the fields named in this variable, e.g.
``CLFSLOAD_TEST_RETRY="read_timeout=2,connect_timeout=2,base_delay=0.05,max_delay=0.5"``,
so the fault-injection tests can make a stalled request cost seconds, not
minutes. It is meant for tests only. The edge reads it with the other
switches (:class:`clfsload.settings.Switches`); the loader and the reading
commands give the result to every Azure target they open, in the driver and
in the workers (a target opened without options gets plain
:class:`RetrySettings`). A malformed value raises ``ValueError`` naming
the field; the value holds only numbers and is never logged.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Mapping, Optional, TypeVar

__all__ = [
    "RETRYABLE_STATUS",
    "RetrySettings",
    "TEST_RETRY_ENV",
    "default_retry_settings",
    "Failure",
    "parse_retry_after",
    "run_with_retry",
    "arun_with_retry",
]

T = TypeVar("T")

#: HTTP statuses worth another attempt. 501 and 505 are not: they never heal.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})

#: The test hook's variable (see the module docstring).
TEST_RETRY_ENV = "CLFSLOAD_TEST_RETRY"


@dataclass(frozen=True)
class RetrySettings:
    """Bounds and timings of the retry layer (all times in seconds).

    ``connect_timeout`` and ``read_timeout`` are the per-attempt socket
    timeouts the clients are built with; ``read_timeout`` also bounds waiting
    for a response after the body was sent, and how long a request body may
    go without the connection taking any of it.
    """

    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 60.0
    total_timeout: float = 300.0
    connect_timeout: float = 20.0
    read_timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if min(self.base_delay, self.max_delay, self.max_retry_after) < 0:
            raise ValueError("retry delays must not be negative")
        if self.total_timeout <= 0 or self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("timeouts must be positive")

    def backoff(self, attempt: int, rng: Callable[[float, float], float] = random.uniform) -> float:
        """Full-jitter wait after failed attempt number *attempt* (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** min(attempt - 1, 60)))
        return rng(0.0, ceiling)


def default_retry_settings(environ: Mapping[str, str]) -> RetrySettings:
    """The default :class:`RetrySettings`, with the overrides of ``CLFSLOAD_TEST_RETRY`` in ``environ`` (a test hook).

    The variable is a comma-separated list of ``field=number`` for fields of
    :class:`RetrySettings`; ``max_attempts`` takes an integer.
    """
    raw = environ.get(TEST_RETRY_ENV, "").strip()
    if not raw:
        return RetrySettings()
    fields = [f.name for f in dataclasses.fields(RetrySettings)]
    overrides: dict = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in fields:
            raise ValueError(f"{TEST_RETRY_ENV}: unknown retry setting {key!r}; one of {', '.join(fields)}")
        try:
            overrides[key] = int(value) if key == "max_attempts" else float(value)
        except ValueError:
            raise ValueError(f"{TEST_RETRY_ENV}: {key} needs a number") from None
    return RetrySettings(**overrides)


@dataclass
class Failure:
    """How a caller classified one failed attempt.

    ``error`` is what to raise if no retry follows (already translated into
    a :mod:`clfsload.errors` class, or a raw exception for the caller to
    translate). ``retry_after`` is the server's requested wait, if any.
    """

    retryable: bool
    error: BaseException
    retry_after: Optional[float] = None
    detail: str = field(default="")


def parse_retry_after(headers: Mapping[str, str], now: Optional[float] = None) -> Optional[float]:
    """Seconds the server asks us to wait, from ``Retry-After`` or ``x-ms-retry-after-ms``.

    ``Retry-After`` may be a number of seconds or an HTTP date. Returns None
    if neither header is present or parsable; never a negative number.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("x-ms-retry-after-ms") or lowered.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if not raw:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    import email.utils  # an HTTP date here is rare: not loaded at start-up

    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _next_wait(settings: RetrySettings, attempt: int, failure: Failure, started: float,
               clock: Callable[[], float]) -> Optional[float]:
    """The wait before the next attempt, or None to give up."""
    if not failure.retryable or attempt >= settings.max_attempts:
        return None
    wait = settings.backoff(attempt)
    if failure.retry_after is not None:
        wait = max(wait, min(failure.retry_after, settings.max_retry_after))
    if clock() + wait - started > settings.total_timeout:
        return None
    return wait


def _final(failure: Failure, attempts: int, elapsed: float) -> BaseException:
    """The error to raise; for a retryable failure it says how long we tried."""
    error = failure.error
    if not failure.retryable or attempts < 2:
        return error
    try:
        return type(error)(f"{error} (gave up after {attempts} attempts in {elapsed:.1f}s)")
    except TypeError:  # an exception class with a different constructor: keep it as is
        return error


class _Retrying:
    """One retried call, for :func:`run_with_retry` and :func:`arun_with_retry`: its attempts and what follows a failure."""

    def __init__(self, classify: Callable[[BaseException], Failure], settings: RetrySettings,
                 clock: Callable[[], float], on_retry: Optional[Callable[[int, float, Failure], None]]) -> None:
        self.classify = classify
        self.settings = settings
        self.clock = clock
        self.on_retry = on_retry
        self.started = clock()
        #: attempts made so far (the caller counts each one as it starts)
        self.attempt = 0

    def wait_after(self, exc: Exception) -> float:
        """The wait before the next attempt (``on_retry`` told first), or raise the error that ends the call.

        That error is *exc* itself when classify says so, otherwise the
        translated one, raised ``from None`` (see :func:`run_with_retry`).
        """
        failure = self.classify(exc)
        wait = _next_wait(self.settings, self.attempt, failure, self.started, self.clock)
        if wait is None:
            if failure.error is exc:
                raise exc
            raise _final(failure, self.attempt, self.clock() - self.started) from None
        if self.on_retry is not None:
            self.on_retry(self.attempt, wait, failure)
        return wait


def run_with_retry(
    attempt_fn: Callable[[], T],
    classify: Callable[[BaseException], Failure],
    settings: RetrySettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Optional[Callable[[int, float, Failure], None]] = None,
) -> T:
    """Call *attempt_fn* until it returns, retrying failures *classify* calls retryable.

    *classify* receives each exception and returns a :class:`Failure`; when
    no retry follows, ``failure.error`` is raised. It is raised ``from None``:
    the original (SDK) exception may carry a URL with a SAS in its text, and a
    logged traceback would print it. The translated error carries the redacted
    detail instead.
    *on_retry(attempt, wait, failure)* is called before each wait.
    """
    retrying = _Retrying(classify, settings, clock, on_retry)
    while True:
        retrying.attempt += 1
        try:
            return attempt_fn()
        except Exception as exc:  # noqa: BLE001 - classify() decides; it re-raises what it does not know
            sleep(retrying.wait_after(exc))


async def arun_with_retry(
    attempt_fn: Callable[[], Awaitable[T]],
    classify: Callable[[BaseException], Failure],
    settings: RetrySettings,
    *,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Optional[Callable[[int, float, Failure], None]] = None,
) -> T:
    """The asyncio twin of :func:`run_with_retry` (waits with ``asyncio.sleep``)."""
    import asyncio  # loaded already wherever a coroutine runs; a blocking caller never needs it

    retrying = _Retrying(classify, settings, clock, on_retry)
    while True:
        retrying.attempt += 1
        try:
            return await attempt_fn()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - see run_with_retry
            await asyncio.sleep(retrying.wait_after(exc))
