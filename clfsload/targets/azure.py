"""The blocking Azure Blob target (azure-storage-blob v12, requests transport).

* One ``ContainerClient`` per target with its own ``requests`` session whose
  pool holds ``max_connections`` connections, so one target can be shared
  by that many threads without "connection pool is full" churn.
* The SDK's retry policy is switched off (``retry_total=0``); every
  operation goes through :func:`~clfsload.targets.retry.run_with_retry`
  instead, and a listing retries page by page from its continuation token.
* ``put`` is a single Put Blob (``overwrite=True``) up to 256 MiB.
* What the operations do (access probes, listings, deletes) is written once
  for both Azure targets in :mod:`clfsload.targets.azure_plans`; this module
  is the transport: one SDK call per kind of request.
* ``HTTP(S)_PROXY``, ``NO_PROXY`` and ``REQUESTS_CA_BUNDLE`` work as in
  ``requests``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List, Optional, Tuple, TypeVar

from . import azure_plans as plans
from .azure_access import AzureAccess
from .azure_common import PROBE_ETAG, AzureOptions, AzureTargetCore, TargetStats, probe_missed, sdk_client_options
from .azure_plans import Call, Listing, Plan
from .base import BlobTarget, Payload
from .retry import run_with_retry

__all__ = ["AzureBlobTarget"]

T = TypeVar("T")


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
            transport=transport, **sdk_client_options(opts),
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

    def _step(self, call: Call) -> Any:
        """Carry out one call of a plan: its transport method, retried."""
        transport = getattr(self, "_" + call.kind)
        return self._call(lambda: call.invoke(transport), call.op, call.name)

    def _run(self, plan: Plan[T]) -> T:
        return plans.run_blocking(plan, self._step)

    # -- BlobTarget (the logic is in azure_plans) ----------------------------

    def describe(self) -> str:
        """``azure:`` plus the container URL."""
        return self._core.describe()

    def check_access(self, *, read: bool = True, write: bool = True, delete: bool = True,
                     list_: bool = True) -> None:
        """Probe each permission without leaving anything in the container."""
        self._run(plans.check_access(self._core, read, write, delete, list_))

    def create_container(self) -> None:
        """Create the container if it does not exist (needs an account-level credential)."""
        self._run(plans.create_container())

    def is_empty(self) -> bool:
        """True if the container holds no blob (the targets' own ``.clfsload-`` names aside)."""
        return self._run(plans.is_empty())

    def list_names(self, prefix: str = "") -> Iterator[str]:
        """Yield names starting with *prefix* (not ``.clfsload-`` ones); each page of 5,000 is retried alone."""
        return plans.listing_pages(Listing(prefix), self._step)

    def list_sizes(self, prefix: str = "") -> Iterator[Tuple[str, Optional[int]]]:
        """Yield ``(name, size)`` of the blobs starting with *prefix* (List Blobs gives each Content-Length)."""
        return plans.listing_pages(Listing(prefix, sized=True), self._step)

    def put(self, name: str, payload: Payload) -> None:
        """One Put Blob that creates or replaces *name*."""
        self._run(plans.put(self._core, name, payload if isinstance(payload, bytes) else bytes(payload)))

    def get(self, name: str) -> bytes:
        """The whole content of *name*."""
        return self._run(plans.get(name))

    def delete(self, name: str, *, missing_ok: bool = True) -> None:
        """Delete *name*. A 404 after a retried attempt counts as deleted (the first one may have landed)."""
        self._run(plans.delete(name, missing_ok))

    # -- transport: one method per call kind of azure_plans -------------------

    def _list(self, prefix: str, token: Optional[str], size: int) -> Tuple[List[str], Optional[str]]:
        pager = self._cc.list_blob_names(name_starts_with=prefix or None, results_per_page=size)
        pages = pager.by_page(continuation_token=token)
        names = list(next(pages))
        return names, pages.continuation_token

    def _list_sizes(self, prefix: str, token: Optional[str], size: int) -> Tuple[List[Tuple[str, int]], Optional[str]]:
        pager = self._cc.list_blobs(name_starts_with=prefix or None, results_per_page=size)
        pages = pager.by_page(continuation_token=token)
        blobs = [(b.name, b.size) for b in next(pages)]
        return blobs, pages.continuation_token

    def _get(self, name: str) -> bytes:
        return self._cc.download_blob(name, max_concurrency=1).readall()

    def _put(self, name: str, data: bytes) -> None:
        self._cc.upload_blob(name, data, overwrite=True, length=len(data))

    def _delete(self, name: str) -> None:
        self._cc.delete_blob(name)

    def _probe_put(self, probe: str) -> bool:
        """A Put Blob that cannot succeed (If-Match on a made-up ETag); True if it did anyway."""
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError

        try:
            self._cc.upload_blob(probe, b"", overwrite=True, etag=PROBE_ETAG,
                                 match_condition=MatchConditions.IfNotModified)
        except HttpResponseError as exc:
            if probe_missed(exc.status_code, getattr(exc, "error_code", None)):
                return False
            raise
        return True

    def _create(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            self._cc.create_container()
        except ResourceExistsError:
            return

    def close(self) -> None:
        """Close the client, its session and (Azure AD) the token credential."""
        self._cc.close()
        if self._session is not None:
            self._session.close()
        closer = getattr(self._sdk_credential, "close", None)
        if callable(closer):
            closer()
