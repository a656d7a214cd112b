"""Retries (clfsload.targets.retry) on every Azure client, checked against a scripted HTTP server
(tests/_fake_blob_server.py) that counts requests; Retry-After parsing and the back-off."""

from __future__ import annotations

import datetime as dt
import time
from typing import Iterator

import pytest
from _fake_blob_server import FakeBlobServer

from clfsload.errors import AccessDeniedError, ClfsLoadError, TransientError
from clfsload.targets import AzureOptions, RetrySettings, open_async_target, open_target
from clfsload.targets.retry import parse_retry_after

from _targets import FAST, FAST_RETRY, run


@pytest.fixture
def fake() -> Iterator[FakeBlobServer]:
    server = FakeBlobServer().start()
    yield server
    server.stop()


FAKE_SAS = "sv=2025-01-05&sr=c&sp=racwdl&se=2099-01-01T00%3A00%3A00Z&sig=ZmFrZQ%3D%3D"


def _put_with(kind: str, fake: FakeBlobServer, settings: RetrySettings = FAST_RETRY) -> float:
    """Put one blob through target *kind*; return the seconds it took."""
    options = AzureOptions(retry=settings, data_path="sdk" if kind != "aio-http" else "http")
    started = time.monotonic()
    if kind == "sync":
        with open_target(fake.endpoint, "cont1", FAKE_SAS, options=options) as target:
            target.put("blob", b"payload")
    else:
        async def body() -> None:
            async with await open_async_target(fake.endpoint, "cont1", FAKE_SAS, options=options) as target:
                await target.put("blob", b"payload")
        run(body())
    return time.monotonic() - started


KINDS = ["sync", "aio-sdk", "aio-http"]


@pytest.mark.parametrize("kind", KINDS)
def test_retry_503_then_success(fake: FakeBlobServer, kind: str) -> None:
    fake.load(("status", 503, {"x-ms-error-code": "ServerBusy"}), ("status", 500, {}))
    elapsed = _put_with(kind, fake)
    assert [m for m, _ in fake.requests] == ["PUT", "PUT", "PUT"]
    assert elapsed < 3  # our back-off only: the SDK's own policy (15 s and up) is off
    assert fake.requests[-1][1].startswith("/devstoreaccount1/cont1/blob?")


@pytest.mark.parametrize("kind", KINDS)
def test_retry_429_honours_retry_after(fake: FakeBlobServer, kind: str) -> None:
    fake.load(("status", 429, {"Retry-After": "1", "x-ms-error-code": "TooManyRequests"}))
    elapsed = _put_with(kind, fake)
    assert len(fake.requests) == 2
    assert elapsed >= 1.0  # the back-off alone would be at most 0.01 s


@pytest.mark.parametrize("kind", KINDS)
def test_retry_after_connection_reset(fake: FakeBlobServer, kind: str) -> None:
    fake.load(("reset",), ("reset",))
    _put_with(kind, fake)
    assert len(fake.requests) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_403_is_not_retried(fake: FakeBlobServer, kind: str) -> None:
    fake.load(("status", 403, {"x-ms-error-code": "AuthenticationFailed"}))
    with pytest.raises(AccessDeniedError, match="AuthenticationFailed"):
        _put_with(kind, fake)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("status", [400, 404, 409])
def test_other_client_errors_are_not_retried(fake: FakeBlobServer, status: int) -> None:
    fake.load(("status", status, {"x-ms-error-code": "SomethingWrong"}))
    with pytest.raises(ClfsLoadError, match=f"HTTP {status} SomethingWrong"):
        _put_with("sync", fake)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_attempts_are_bounded(fake: FakeBlobServer, kind: str) -> None:
    fake.load(*[("status", 503, {"x-ms-error-code": "ServerBusy"})] * 10)
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"HTTP 503 ServerBusy persisted .* \(gave up after 4 attempts in "):
        _put_with(kind, fake)
    assert len(fake.requests) == FAST_RETRY.max_attempts  # no second retry layer multiplies them
    assert time.monotonic() - started < 3


def test_total_time_is_bounded(fake: FakeBlobServer) -> None:
    settings = RetrySettings(max_attempts=100, base_delay=0.01, max_delay=0.01, max_retry_after=0.3,
                             total_timeout=1.0)
    fake.load(*[("status", 503, {"Retry-After": "3600"})] * 100)  # capped at 0.3 s per wait
    with pytest.raises(TransientError):
        _put_with("sync", fake, settings)
    assert 3 <= len(fake.requests) <= 5


def test_delete_retried_after_reset_counts_as_done(fake: FakeBlobServer) -> None:
    """The first DELETE may have landed before the reset; its retry's 404 is success."""
    fake.load(("reset",), ("status", 404, {"x-ms-error-code": "BlobNotFound"}))
    with open_target(fake.endpoint, "cont1", FAKE_SAS, options=FAST) as target:
        target.delete("blob", missing_ok=False)
    assert [m for m, _ in fake.requests] == ["DELETE", "DELETE"]


def test_parse_retry_after() -> None:
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after": " 0.5 "}) == 0.5
    assert parse_retry_after({"x-ms-retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"Retry-After": "Wed, 25 Nov 2026 00:00:30 GMT"},
                             now=dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc).timestamp()) == 30.0
    assert parse_retry_after({"Retry-After": "Wed, 25 Nov 2020 00:00:30 GMT"}) == 0.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_backoff_is_full_jitter_and_capped() -> None:
    settings = RetrySettings(base_delay=0.5, max_delay=4.0)
    assert settings.backoff(1, lambda lo, hi: hi) == 0.5
    assert settings.backoff(3, lambda lo, hi: hi) == 2.0
    assert settings.backoff(10, lambda lo, hi: hi) == 4.0
    assert settings.backoff(10, lambda lo, hi: lo) == 0.0
