"""The blocking Azure Blob target (azure-storage-blob v12, requests transport).

* One ``ContainerClient`` per target with its own ``requests`` session whose
  pool holds ``max_connections`` connections, so one target can be shared
  by that many threads without "connection pool is full" churn.
* The SDK's retry policy is switched off (``retry_total=0``); every
  operation goes through :func:`~clfsload.targets.retry.run_with_retry`
  instead, and a listing retries page by page from its continuation token.
* ``put`` is a single Put Blob (``overwrite=True``) up to 256 MiB.
* ``HTTP(S)_PROXY``, ``NO_PROXY`` and ``REQUESTS_CA_BUNDLE`` work as in
  ``requests``.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, List, Optional, Tuple, TypeVar

from ..errors import BlobNotFoundError, ClfsLoadError, TransientError
from .azure_access import AzureAccess
from .azure_common import (
    MAX_SINGLE_PUT,
    PROBE_ETAG,
    AzureOptions,
    AzureTargetCore,
    TargetStats,
    probe_missed,
    probe_name,
)
from .base import RESERVED_PREFIX, BlobTarget, Payload, check_blob_name
from .retry import run_with_retry

__all__ = ["AzureBlobTarget"]

T = TypeVar("T")

_PAGE_SIZE = 5000
_EMPTY_PAGE = 16


class AzureBlobTarget(BlobTarget):
    """A container in Azure Blob storage (or Azurite), reached with blocking calls."""

    def __init__(self, access: AzureAccess, options: Optional[AzureOptions] = None) -> None:
        self._core = AzureTargetCore(access, options or AzureOptions())
        self._sdk_credential: Any = None
        self._session: Any = None
        self._cc = self._build_client()

    def _build_client(self) -> Any:
        import requests
        from azure.core.pipeline.transport import RequestsTransport
        from azure.storage.blob import ContainerClient
        from requests.adapters import HTTPAdapter

        opts = self._core.options
        access = self._core.access
        self._sdk_credential = access.sdk_credential(aio=False)
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=opts.max_connections)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        transport = RequestsTransport(
            session=self._session, session_owner=False,
            connection_timeout=opts.retry.connect_timeout, read_timeout=opts.retry.read_timeout,
        )
        return ContainerClient(
            access.endpoint.url, access.container, credential=self._sdk_credential,
            transport=transport, retry_total=0, user_agent=opts.user_agent,
            max_single_put_size=MAX_SINGLE_PUT, max_single_get_size=MAX_SINGLE_PUT,
        )

    # -- plumbing -------------------------------------------------------------

    @property
    def stats(self) -> TargetStats:
        """Request counters (retries, throttling, puts, bytes)."""
        return self._core.stats

    def _call(self, fn: Callable[[], T], op: str, name: Optional[str]) -> T:
        mapper = self._core.mapper
        return run_with_retry(
            fn, lambda exc: mapper.classify(exc, op, name), self._core.options.retry,
            on_retry=self._core.on_retry(op, name),
        )

    # -- BlobTarget ----------------------------------------------------------

    def describe(self) -> str:
        """``azure:`` plus the container URL."""
        return self._core.describe()

    def check_access(self, *, read: bool = True, write: bool = True, delete: bool = True,
                     list_: bool = True) -> None:
        """Probe each permission without leaving anything in the container."""
        ops = self._core.wanted_ops(read, write, delete, list_)
        self._core.mapper.sas_precheck(ops)
        probe = probe_name()
        try:
            for op in ops:
                if op == "list":
                    self._call(lambda: self._page("", None, 1), "list", None)
                elif op == "get":
                    self._expect_missing(lambda: self._cc.download_blob(probe).readall(), "get")
                elif op == "delete":
                    self._expect_missing(lambda: self._cc.delete_blob(probe), "delete")
                else:
                    self._probe_write(probe, delete)
        except TransientError as exc:
            raise self._core.unreachable(exc) from None

    def _expect_missing(self, fn: Callable[[], object], op: str) -> None:
        try:
            self._call(fn, op, None)
        except BlobNotFoundError:
            return

    def _probe_write(self, probe: str, can_delete: bool) -> None:
        """Prove the write permission.

        With delete allowed: create the probe blob, overwrite it (only 'w'
        allows that; 'c' creates but cannot replace) and delete it. Without:
        a conditional Put Blob that cannot succeed (If-Match on a made-up
        ETag), which proves 'c' or 'w' but cannot tell them apart.
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError

        if can_delete:
            self._call(lambda: self._cc.upload_blob(probe, b"", overwrite=True), "put", None)
            try:
                self._call(lambda: self._cc.upload_blob(probe, b"", overwrite=True), "put", None)
            finally:
                with contextlib.suppress(ClfsLoadError):
                    self._expect_missing(lambda: self._cc.delete_blob(probe), "delete")
            return

        def attempt() -> bool:
            try:
                self._cc.upload_blob(probe, b"", overwrite=True, etag=PROBE_ETAG,
                                     match_condition=MatchConditions.IfNotModified)
            except HttpResponseError as exc:
                if probe_missed(exc.status_code, getattr(exc, "error_code", None)):
                    return False
                raise
            return True

        if self._call(attempt, "put", None):  # a server that ignored If-Match wrote it: remove it
            with contextlib.suppress(ClfsLoadError):
                self._expect_missing(lambda: self._cc.delete_blob(probe), "delete")

    def create_container(self) -> None:
        """Create the container if it does not exist (needs an account-level credential)."""
        from azure.core.exceptions import ResourceExistsError

        def attempt() -> None:
            try:
                self._cc.create_container()
            except ResourceExistsError:
                return

        self._call(attempt, "create", None)

    def is_empty(self) -> bool:
        """True if the container holds no blob (the targets' own ``.clfsload-`` names aside)."""
        token: Optional[str] = None
        while True:
            names, token = self._call(functools.partial(self._page, "", token, _EMPTY_PAGE), "list", None)
            if any(not n.startswith(RESERVED_PREFIX) for n in names):
                return False
            if not token:
                return True

    def list_names(self, prefix: str = "") -> Iterator[str]:
        """Yield names starting with *prefix* (not ``.clfsload-`` ones); each page of 5,000 is retried alone."""
        token: Optional[str] = None
        while True:
            names, token = self._call(functools.partial(self._page, prefix, token, _PAGE_SIZE), "list", None)
            for name in names:
                if not name.startswith(RESERVED_PREFIX):
                    yield name
            if not token:
                return

    def list_sizes(self, prefix: str = "") -> Iterator[Tuple[str, Optional[int]]]:
        """Yield ``(name, size)`` of the blobs starting with *prefix* (List Blobs gives each Content-Length)."""
        token: Optional[str] = None
        while True:
            blobs, token = self._call(functools.partial(self._sized_page, prefix, token), "list", None)
            for name, size in blobs:
                if not name.startswith(RESERVED_PREFIX):
                    yield name, size
            if not token:
                return

    def _sized_page(self, prefix: str, token: Optional[str]) -> Tuple[List[Tuple[str, int]], Optional[str]]:
        pager = self._cc.list_blobs(name_starts_with=prefix or None, results_per_page=_PAGE_SIZE)
        pages = pager.by_page(continuation_token=token)
        blobs = [(b.name, b.size) for b in next(pages)]
        return blobs, pages.continuation_token

    def _page(self, prefix: str, token: Optional[str], size: int) -> Tuple[List[str], Optional[str]]:
        pager = self._cc.list_blob_names(name_starts_with=prefix or None, results_per_page=size)
        pages = pager.by_page(continuation_token=token)
        names = list(next(pages))
        return names, pages.continuation_token

    def put(self, name: str, payload: Payload) -> None:
        """One Put Blob that creates or replaces *name*."""
        check_blob_name(name)
        data = payload if isinstance(payload, bytes) else bytes(payload)
        self._call(lambda: self._cc.upload_blob(name, data, overwrite=True, length=len(data)), "put", name)
        self._core.stats.count_put(len(data))

    def get(self, name: str) -> bytes:
        """The whole content of *name*."""
        check_blob_name(name)
        return self._call(lambda: self._cc.download_blob(name, max_concurrency=1).readall(), "get", name)

    def delete(self, name: str, *, missing_ok: bool = True) -> None:
        """Delete *name*. A 404 after a retried attempt counts as deleted (the first one may have landed)."""
        check_blob_name(name)
        attempts = 0

        def attempt() -> None:
            nonlocal attempts
            attempts += 1
            self._cc.delete_blob(name)

        try:
            self._call(attempt, "delete", name)
        except BlobNotFoundError:
            if not (missing_ok or attempts > 1):
                raise

    def close(self) -> None:
        """Close the client, its session and (Azure AD) the token credential."""
        self._cc.close()
        if self._session is not None:
            self._session.close()
        closer = getattr(self._sdk_credential, "close", None)
        if callable(closer):
            closer()
