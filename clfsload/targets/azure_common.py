"""Pieces the blocking and the asyncio Azure targets share: settings, stats, probes."""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from .. import __version__
from ..errors import TerminalError, TransientError
from .azure_access import AzureAccess
from .azure_errors import ErrorMapper
from .base import RESERVED_PREFIX
from .redaction import protect_library_loggers
from .retry import Failure, RetrySettings

__all__ = ["AzureOptions", "TargetStats", "AzureTargetCore", "PROBE_ETAG", "probe_missed", "probe_name",
           "sdk_client_options"]

log = logging.getLogger("clfsload.targets")

#: A Put Blob up to this size is one request (Azure allows 5,000 MiB; CLFS
#: objects are about 8 MiB). Larger payloads would go through Put Block.
MAX_SINGLE_PUT = 256 * 1024 * 1024

#: An ETag no blob has: a conditional Put Blob with it checks the write
#: permission without writing anything (the answer is 412 or 404, or 403).
PROBE_ETAG = '"0x8D0000000000000"'


def probe_missed(status: object, code: object) -> bool:
    """True for the answers a conditional probe Put Blob gets when writing is allowed (412, 404 BlobNotFound)."""
    return status == 412 or (status == 404 and "BlobNotFound" in str(getattr(code, "value", code) or ""))


def sdk_client_options(options: "AzureOptions") -> Dict[str, Any]:
    """The keyword arguments both targets give the SDK's ``ContainerClient`` (its own retries off)."""
    return {"retry_total": 0, "user_agent": options.user_agent,
            "max_single_put_size": MAX_SINGLE_PUT, "max_single_get_size": MAX_SINGLE_PUT}


def probe_name() -> str:
    """A fresh blob name for access probes; it is never created."""
    return f"{RESERVED_PREFIX}probe-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class AzureOptions:
    """Tuning of an Azure target.

    ``max_connections``: connection pool size (blocking) or in-flight limit
    (asyncio). ``data_path`` (asyncio only): ``sdk`` sends every request
    through azure-storage-blob's aio client; ``http`` sends put/get/delete as
    bare requests to a SAS URL through the lean HTTP/1.1 client of
    :mod:`clfsload.targets.wire` (through aiohttp when a proxy is set; about
    4x less client CPU per Put Blob than the SDK); ``auto`` picks ``http`` when a SAS is at hand (SAS token, account
    key or connection string) and ``sdk`` for Azure AD. ``retry``: the
    loader passes the edge's (:attr:`clfsload.settings.Switches.retry`).
    """

    retry: RetrySettings = field(default_factory=RetrySettings)
    max_connections: int = 64
    data_path: str = "auto"
    api_version: str = "2025-01-05"
    user_agent: str = f"clfsload/{__version__}"

    def __post_init__(self) -> None:
        if self.data_path not in ("auto", "sdk", "http"):
            raise ValueError("data_path must be 'auto', 'sdk' or 'http'")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")


class TargetStats:
    """Counters a progress line can show; updated by every request attempt."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.retries = 0
        self.throttled = 0
        self.puts = 0
        self.bytes_put = 0

    def count_retry(self, failure: Failure) -> None:
        """Record one retry; 429 and 503 answers also count as throttling."""
        with self._lock:
            self.retries += 1
            if failure.detail.startswith(("HTTP 429", "HTTP 503")):
                self.throttled += 1

    def count_put(self, size: int) -> None:
        """Record one successful put of *size* bytes."""
        with self._lock:
            self.puts += 1
            self.bytes_put += size

    def __repr__(self) -> str:
        return (f"TargetStats(puts={self.puts}, bytes_put={self.bytes_put}, "
                f"retries={self.retries}, throttled={self.throttled})")


class AzureTargetCore:
    """State and helpers both Azure targets keep: identity, error mapper, stats."""

    def __init__(self, access: AzureAccess, options: AzureOptions) -> None:
        protect_library_loggers()
        self.access = access
        self.options = options
        self.mapper = ErrorMapper(access.account, access.container, access.endpoint.url, access.auth)
        self.stats = TargetStats()

    def describe(self) -> str:
        """``azure:`` plus the container URL (never a query)."""
        return f"azure:{self.access.container_url}"

    def on_retry(self, op: str, name: Optional[str]):  # noqa: ANN201 - a callback factory
        """A retry callback that logs at DEBUG and counts."""
        def callback(attempt: int, wait: float, failure: Failure) -> None:
            self.stats.count_retry(failure)
            log.debug("retry %d of %s %s in %.2fs after %s", attempt, op, name or self.access.container,
                      wait, failure.detail or type(failure.error).__name__)
        return callback

    @staticmethod
    def wanted_ops(read: bool, write: bool, delete: bool, list_: bool) -> Tuple[str, ...]:
        """The operations check_access must probe, in the order it probes them."""
        ops = []
        if list_:
            ops.append("list")
        if read:
            ops.append("get")
        if delete:
            ops.append("delete")
        if write:
            ops.append("put")
        return tuple(ops)

    def unreachable(self, exc: TransientError) -> TerminalError:
        """Turn a transient failure during the access check into a terminal one."""
        return TerminalError(f"cannot use {self.describe()}: {exc}")
