"""Shared pieces of the storage-target tests (tests/test_target_*.py): fast retry settings, a fresh Azurite container."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Iterator

import pytest
from azurite import Azurite

from clfsload.targets import AzureOptions, RetrySettings

FAST_RETRY = RetrySettings(max_attempts=4, base_delay=0.01, max_delay=0.05, max_retry_after=5.0,
                           total_timeout=20.0, connect_timeout=2.0, read_timeout=10.0)
FAST = AzureOptions(retry=FAST_RETRY, max_connections=16)


def run(coro: Awaitable) -> object:
    """Run one coroutine on a fresh event loop."""
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture
def container(azurite: Azurite) -> Iterator[str]:
    """A fresh, empty Azurite container (the test module must see the ``azurite`` fixture too)."""
    name = azurite.create_container()
    yield name
    azurite.delete_container(name)
