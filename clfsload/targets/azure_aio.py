"""The asyncio Azure Blob target: the SDK's aio client, plus a bare-HTTP data path.

Listings and container calls always use ``azure.storage.blob.aio``. Put, get
and delete take one of two paths (:class:`AzureOptions` ``data_path``):

* ``sdk``: the same aio ``ContainerClient``;
* ``http``: one bare request straight to ``<container>/<blob>?<SAS>``
  (``x-ms-blob-type: BlockBlob``, ``x-ms-version``) through the lean client
  of :mod:`clfsload.targets.wire`, at most ``max_connections`` connections.
  It skips the SDK pipeline, which costs about 4x the client CPU per small
  Put Blob, and aiohttp's request machinery, which costs about 1.6x. With an
  account key the SAS is signed locally (4 h, renewed an hour before it
  ends); Azure AD has no SAS, so it always uses ``sdk``.

When ``HTTP(S)_PROXY``/``NO_PROXY`` choose a proxy for the endpoint (read
once), the ``http`` path sends through aiohttp instead, which speaks to
proxies. The SDK client and the aiohttp session are created on first use,
inside the running loop; one retry layer and one error mapping serve all.

Why three HTTP clients: they are two connection pools and one client on
top of one of them. The SDK's ``ContainerClient`` is needed whatever the
data path (listings, creating the container, and every request under Azure
AD, which has no SAS); it sends through the aiohttp ``ClientSession``,
which is also the ``http`` path's client behind a proxy, so those share one
pool of ``max_connections``. The :class:`~clfsload.targets.wire.WirePool`
carries only the ``http`` data path, and exists only when no proxy is set;
it is not made at all under ``sdk``. Folding it into aiohttp would cost the
CPU it saves; dropping aiohttp would leave the SDK and proxies without a
transport.

What the operations do (access probes, listings, deletes) is written once
for both Azure targets in :mod:`clfsload.targets.azure_plans`; this module
is the transport: one method per kind of request.

Timeouts of one bare request: ``connect_timeout`` to connect; then
``read_timeout`` without progress: the lean client fails a request when the
socket neither took a byte of its body nor gave a byte of the answer for that
long. Through aiohttp, which starts its read timeout only once the body is
sent, a large body goes in pieces under :class:`_BodyWatch` so that a server
that stops reading it is noticed too.
"""

from __future__ import annotations

import asyncio
import urllib.parse
import urllib.request
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Mapping, Optional, Tuple, TypeVar, Union

from ..errors import ClfsLoadError, TargetConfigError
from . import azure_plans as plans
from .azure_access import AzureAccess, SasSource
from .azure_common import PROBE_ETAG, AzureOptions, AzureTargetCore, TargetStats, probe_missed, sdk_client_options
from .azure_plans import Call, Listing, Plan
from .base import AsyncBlobTarget, Payload
from .retry import Failure, arun_with_retry
from .wire import WirePool

__all__ = ["AsyncAzureBlobTarget"]

T = TypeVar("T")
#: Bodies larger than this are sent in pieces of this size under a _BodyWatch;
#: smaller ones fit in the socket buffers and go as they are.
_WATCHED_BODY = 256 * 1024


class HttpStatusError(Exception):
    """A non-success answer on the bare HTTP path (internal; mapped before it leaves)."""

    def __init__(self, status: int, code: str, body: str, headers: Mapping[str, str]) -> None:
        super().__init__(f"HTTP {status} {code}")
        self.status = status
        self.code = code
        self.body = body
        self.headers = dict(headers)


class BodyStalled(TimeoutError):
    """A request body made no progress for ``read_timeout`` seconds (retryable, as any timeout)."""


class _BodyWatch:
    """Feeds a request body in pieces and notices when the connection stops taking them.

    aiohttp asks for the next piece only once the previous one was handed to
    the socket (it waits for the transport to drain), so the time since the
    last piece was asked for is how long the upload has been stuck.
    """

    def __init__(self, payload: Payload, limit: float) -> None:
        self._view = memoryview(payload).cast("B")
        self.size = len(self._view)
        self._limit = limit
        self._loop = asyncio.get_running_loop()
        self._last: Optional[float] = None  # None until aiohttp starts on the body
        self.finished = False

    async def pieces(self) -> AsyncIterator[memoryview]:
        """The body, piece by piece (aiohttp sends them under the request's Content-Length)."""
        for offset in range(0, len(self._view), _WATCHED_BODY):
            self._last = self._loop.time()
            yield self._view[offset:offset + _WATCHED_BODY]
        # Every piece was taken: from here aiohttp's own read timeout applies.
        self.finished = True

    def time_left(self) -> float:
        """Seconds until the body counts as stalled (the limit itself before the first piece)."""
        if self._last is None:
            return self._limit
        return max(0.0, self._last + self._limit - self._loop.time())

    async def run(self, request: Awaitable[T]) -> T:
        """Await *request*; raise BodyStalled (and cancel it) if its body stops moving."""
        task = asyncio.ensure_future(request)
        try:
            while not self.finished:
                done, _ = await asyncio.wait({task}, timeout=max(self.time_left(), 0.01))
                if done:
                    break
                if self._last is not None and not self.finished and self.time_left() <= 0:
                    raise BodyStalled(f"the request body made no progress for {self._limit:g}s")
            return await task
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


def env_proxy(url: str) -> Optional[str]:
    """The proxy ``HTTP(S)_PROXY``/``NO_PROXY`` choose for *url*, or None."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if urllib.request.proxy_bypass_environment(host):  # type: ignore[attr-defined]
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)  # type: ignore[attr-defined]


class AsyncAzureBlobTarget(AsyncBlobTarget):
    """A container in Azure Blob storage (or Azurite), reached from asyncio."""

    def __init__(self, access: AzureAccess, options: Optional[AzureOptions] = None) -> None:
        self._core = AzureTargetCore(access, options or AzureOptions())
        mode = self._core.options.data_path
        self._sas: Optional[SasSource] = access.sas_source() if mode != "sdk" else None
        if mode == "http" and self._sas is None:
            raise TargetConfigError(f"data path 'http' needs a SAS or an account key, not {access.auth.label}")
        self._proxy = env_proxy(access.endpoint.url)
        self._blob_base = access.container_url + "/"
        self._session: Any = None
        self._cc: Any = None
        self._sdk_credential: Any = None
        self._closed = False
        opts = self._core.options
        self._headers = {"x-ms-version": opts.api_version, "User-Agent": opts.user_agent}
        self._put_headers = dict(self._headers, **{"x-ms-blob-type": "BlockBlob",
                                                   "Content-Type": "application/octet-stream"})
        self._wire: Optional[WirePool] = None
        self._wire_url = urllib.parse.urlsplit(self._blob_base)  # the lean client's scheme, host, port, path
        self._wire_headers = "".join(f"{key}: {value}\r\n" for key, value in self._headers.items())
        self._wire_put_headers = "".join(f"{key}: {value}\r\n" for key, value in self._put_headers.items())

    # -- plumbing -------------------------------------------------------------

    @property
    def data_path(self) -> str:
        """``http`` or ``sdk``: the path put/get/delete take."""
        return "http" if self._sas is not None else "sdk"

    @property
    def stats(self) -> TargetStats:
        """Request counters (retries, throttling, puts, bytes)."""
        return self._core.stats

    def _ensure(self) -> Any:
        if self._cc is not None:
            return self._cc
        if self._closed:
            raise ClfsLoadError(f"target {self.describe()} is closed")
        import aiohttp
        from azure.core.pipeline.transport import AioHttpTransport
        from azure.storage.blob.aio import ContainerClient

        opts = self._core.options
        connector = aiohttp.TCPConnector(limit=opts.max_connections, limit_per_host=opts.max_connections,
                                         ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=opts.retry.connect_timeout,
                                        sock_read=opts.retry.read_timeout)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False,
                                              auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())
        transport = AioHttpTransport(session=self._session, session_owner=False,
                                     connection_timeout=opts.retry.connect_timeout,
                                     read_timeout=opts.retry.read_timeout)
        self._sdk_credential = self._core.access.sdk_credential(aio=True)
        proxies = {"http": self._proxy, "https": self._proxy} if self._proxy else None
        self._cc = ContainerClient(
            self._core.access.endpoint.url, self._core.access.container, credential=self._sdk_credential,
            transport=transport, proxies=proxies, **sdk_client_options(opts),
        )
        return self._cc

    async def _call(self, fn: Callable[[], Awaitable[T]], op: str, name: Optional[str]) -> T:
        mapper = self._core.mapper

        def classify(exc: BaseException) -> Failure:
            if isinstance(exc, HttpStatusError):
                return mapper.classify_http(exc.status, exc.code, exc.body, exc.headers, op, name)
            return mapper.classify(exc, op, name)

        return await arun_with_retry(fn, classify, self._core.options.retry,
                                     on_retry=self._core.on_retry(op, name))

    def _wire_pool(self) -> Optional[WirePool]:
        """The lean HTTP client's connections, made on first use; None when a proxy is set."""
        if self._wire is None and self._proxy is None:
            if self._closed:
                raise ClfsLoadError(f"target {self.describe()} is closed")
            parts = self._wire_url
            opts = self._core.options
            self._wire = WirePool(parts.scheme, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80),
                                  limit=opts.max_connections, connect_timeout=opts.retry.connect_timeout,
                                  read_timeout=opts.retry.read_timeout)
        return self._wire

    async def _http(self, method: str, name: str, data: Optional[Payload] = None,
                    extra: Optional[Dict[str, str]] = None) -> bytes:
        """One bare request for blob *name*; raises HttpStatusError on a non-2xx answer.

        Through :class:`WirePool` unless a proxy is set (then aiohttp, which speaks to proxies).
        """
        assert self._sas is not None
        wire = self._wire_pool()
        if wire is not None:
            target = f"{self._wire_url.path}{urllib.parse.quote(name, safe='')}?{self._sas.token()}"
            headers = self._wire_put_headers if method == "PUT" else self._wire_headers
            if extra:
                headers += "".join(f"{key}: {value}\r\n" for key, value in extra.items())
            answer = await wire.request(method, target, headers, data)
            if answer.status >= 300:
                raise HttpStatusError(answer.status, answer.headers.get("x-ms-error-code", ""),
                                      answer.body.decode("utf-8", "replace"), answer.headers)
            return answer.body
        import yarl

        self._ensure()
        url = yarl.URL(f"{self._blob_base}{urllib.parse.quote(name, safe='')}?{self._sas.token()}", encoded=True)
        headers = self._put_headers if method == "PUT" else self._headers
        if extra:
            headers = dict(headers, **extra)
        if data is None or len(data) <= _WATCHED_BODY:
            return await self._exchange(method, url, data, headers)
        watch = _BodyWatch(data, self._core.options.retry.read_timeout)
        headers = dict(headers, **{"Content-Length": str(watch.size)})
        return await watch.run(self._exchange(method, url, watch.pieces(), headers))

    async def _exchange(self, method: str, url: Any, data: Union[Payload, AsyncIterator[memoryview], None],
                        headers: Mapping[str, str]) -> bytes:
        """Send one request and read its whole answer (aiohttp raises if the body is cut short)."""
        async with self._session.request(method, url, data=data, headers=headers, proxy=self._proxy) as resp:
            body = await resp.read()
            if resp.status >= 300:
                raise HttpStatusError(resp.status, resp.headers.get("x-ms-error-code", ""),
                                      body.decode("utf-8", "replace"), resp.headers)
            return body

    async def _step(self, call: Call) -> Any:
        """Carry out one call of a plan: its transport method, retried."""
        transport = getattr(self, "_" + call.kind)
        return await self._call(lambda: call.invoke(transport), call.op, call.name)

    async def _run(self, plan: Plan[T]) -> T:
        return await plans.run_async(plan, self._step)

    # -- AsyncBlobTarget (the logic is in azure_plans) ---------------------------

    def describe(self) -> str:
        """``azure:`` plus the container URL."""
        return self._core.describe()

    async def check_access(self, *, read: bool = True, write: bool = True, delete: bool = True,
                           list_: bool = True) -> None:
        """Probe each permission without leaving anything in the container."""
        await self._run(plans.check_access(self._core, read, write, delete, list_))

    async def create_container(self) -> None:
        """Create the container if it does not exist (needs an account-level credential)."""
        await self._run(plans.create_container())

    async def is_empty(self) -> bool:
        """True if the container holds no blob (the targets' own ``.clfsload-`` names aside)."""
        return await self._run(plans.is_empty())

    async def list_names(self, prefix: str = "") -> AsyncIterator[str]:  # type: ignore[override]
        """Yield names starting with *prefix* (not ``.clfsload-`` ones); each page of 5,000 is retried alone."""
        listing = Listing(prefix)
        while not listing.done:
            for name in listing.take(await self._step(listing.next_call())):
                yield name

    async def put(self, name: str, payload: Payload) -> None:
        """One Put Blob that creates or replaces *name*."""
        if self._sas is None and not isinstance(payload, bytes):
            payload = bytes(payload)
        await self._run(plans.put(self._core, name, payload))

    async def get(self, name: str) -> bytes:
        """The whole content of *name*."""
        return await self._run(plans.get(name))

    async def delete(self, name: str, *, missing_ok: bool = True) -> None:
        """Delete *name*. A 404 after a retried attempt counts as deleted."""
        await self._run(plans.delete(name, missing_ok))

    # -- transport: one method per call kind of azure_plans -----------------------

    async def _list(self, prefix: str, token: Optional[str], size: int) -> Tuple[List[str], Optional[str]]:
        pager = self._ensure().list_blob_names(name_starts_with=prefix or None, results_per_page=size)
        pages = pager.by_page(continuation_token=token)
        page = await pages.__anext__()
        names = [name async for name in page]
        return names, pages.continuation_token

    async def _get(self, name: str) -> bytes:
        if self._sas is not None:
            return await self._http("GET", name)
        downloader = await self._ensure().download_blob(name, max_concurrency=1)
        return await downloader.readall()

    async def _put(self, name: str, payload: Payload) -> None:
        if self._sas is not None:
            await self._http("PUT", name, payload)
        else:
            await self._ensure().upload_blob(name, payload, overwrite=True, length=len(payload))

    async def _delete(self, name: str) -> None:
        if self._sas is not None:
            await self._http("DELETE", name)
        else:
            await self._ensure().delete_blob(name)

    async def _probe_put(self, probe: str) -> bool:
        """A Put Blob that cannot succeed (If-Match on a made-up ETag); True if it did anyway."""
        try:
            if self._sas is not None:
                await self._http("PUT", probe, b"", {"If-Match": PROBE_ETAG})
            else:
                from azure.core import MatchConditions

                await self._ensure().upload_blob(probe, b"", overwrite=True, etag=PROBE_ETAG,
                                                 match_condition=MatchConditions.IfNotModified)
        except HttpStatusError as exc:
            if probe_missed(exc.status, exc.code):
                return False
            raise
        except ClfsLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - SDK errors are checked by status, others re-raised
            if probe_missed(getattr(exc, "status_code", None), getattr(exc, "error_code", None)):
                return False
            raise
        return True

    async def _create(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            await self._ensure().create_container()
        except ResourceExistsError:
            return

    async def close(self) -> None:
        """Close the client, the shared session and (Azure AD) the token credential."""
        self._closed = True
        if self._wire is not None:
            await self._wire.close()
            self._wire = None
        if self._cc is not None:
            await self._cc.close()
        if self._session is not None:
            await self._session.close()
        closer = getattr(self._sdk_credential, "close", None)
        if callable(closer):
            await closer()
        self._cc = self._session = self._sdk_credential = None
