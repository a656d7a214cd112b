"""Classify Azure failures (SDK exceptions, raw HTTP answers, network errors).

One :class:`ErrorMapper` per target turns every failed attempt into a
:class:`~clfsload.targets.retry.Failure`: retryable or not, and the
:mod:`clfsload.errors` exception to raise when no retry follows. Messages are
one line, name the operation, blob, container and account, say what to do,
and go through :func:`~clfsload.targets.redaction.redact`.

| answer | retried | raised |
|---|---|---|
| 408, 429, 500, 502, 503, 504, connection errors, timeouts, an answer cut short | yes | TransientError |
| 401, 403 | no | AccessDeniedError (names the credential kind and the missing permission) |
| 404 ContainerNotFound | no | ContainerNotFoundError |
| 404 BlobNotFound | no | BlobNotFoundError |
| 400/404/409 on a container-wide call (list, access check) | no | TerminalError |
| any other answer | no | TargetError |
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Mapping, Optional

from ..errors import (
    AccessDeniedError,
    BlobNotFoundError,
    ClfsLoadError,
    ContainerNotFoundError,
    TargetConfigError,
    TargetError,
    TerminalError,
    TransientError,
)
from .credentials import SasInfo
from .redaction import redact
from .retry import RETRYABLE_STATUS, Failure, parse_retry_after

__all__ = ["AuthMode", "ErrorMapper", "PERMISSIONS", "RECOMMENDED_SAS_PERMISSIONS"]

#: SAS letter and word each operation needs.
PERMISSIONS = {"get": ("r", "read"), "put": ("w", "write"), "delete": ("d", "delete"), "list": ("l", "list")}

#: What the messages tell users to create.
RECOMMENDED_SAS_PERMISSIONS = "racwdl"

_CONTAINER_WIDE_OPS = ("list", "check access to", "create")
_AUTH_DETAIL_RE = re.compile(r"<AuthenticationErrorDetail>(.*?)</AuthenticationErrorDetail>", re.S)
_MESSAGE_RE = re.compile(r"<Message>(.*?)(?:\n|RequestId:|</Message>)", re.S)


@dataclass(frozen=True)
class AuthMode:
    """How requests authenticate: ``sas``, ``key`` or ``aad``; ``label`` is the phrase used in messages."""

    mode: str
    label: str
    sas: Optional[SasInfo] = None


class ErrorMapper:
    """Turns failed attempts on one container into :class:`Failure` values."""

    def __init__(self, account: str, container: str, endpoint_url: str, auth: AuthMode) -> None:
        self.account = account
        self.container = container
        self.endpoint_url = endpoint_url
        self.auth = auth

    # -- entry points ---------------------------------------------------------

    def classify(self, exc: BaseException, op: str, name: Optional[str]) -> Failure:
        """Classify an exception raised by the SDK, aiohttp or the socket layer."""
        if isinstance(exc, ClfsLoadError):
            return Failure(False, exc)
        status = getattr(exc, "status_code", None)
        if status is None:
            response = getattr(exc, "response", None)
            status = getattr(response, "status_code", None)
        # A status-less HttpResponseError (a body that broke off) falls through to the transport check.
        if isinstance(status, int) and _is_http_error(exc):
            code = _error_code(exc)
            headers = _headers(exc)
            return self.classify_http(status, code, str(exc), headers, op, name)
        return self._classify_transport(exc, op, name)

    def classify_http(self, status: int, code: Optional[str], body: str, headers: Mapping[str, str],
                      op: str, name: Optional[str]) -> Failure:
        """Classify an HTTP answer that is not a success."""
        code = code or ""
        what = self._what(op, name)
        shown = f"HTTP {status}" + (f" {code}" if code else "")
        if status in RETRYABLE_STATUS:
            return Failure(
                True,
                TransientError(
                    f"{what}: {shown} persisted through the retries; "
                    "the account is throttled or unavailable, run again later"
                ),
                retry_after=parse_retry_after(headers),
                detail=shown,
            )
        if status in (401, 403):
            return Failure(False, AccessDeniedError(self._denied(status, code, body, op)), detail=shown)
        if status == 404:
            if code == "ContainerNotFound" or (not code and op in _CONTAINER_WIDE_OPS):
                return Failure(False, self.container_missing(), detail=shown)
            if code == "BlobNotFound" or (not code and op in ("get", "delete")):
                return Failure(False, BlobNotFoundError(f"{what}: no such blob"), detail=shown)
        if code in ("ContainerBeingDeleted", "ContainerDisabled"):
            return Failure(False, TerminalError(f"{what}: {shown}; the container is being deleted or is disabled"))
        message = _server_message(body)
        text = f"{what}: {shown}" + (f" ({message})" if message else "")
        if op in _CONTAINER_WIDE_OPS and status in (400, 404, 405, 409):
            return Failure(False, TerminalError(redact(text)), detail=shown)
        return Failure(False, TargetError(redact(text)), detail=shown)

    def container_missing(self) -> ContainerNotFoundError:
        """The error for a container that does not exist."""
        return ContainerNotFoundError(
            f"container '{self.container}' does not exist in account '{self.account}' "
            f"({self.endpoint_url}); create it first or check the name"
        )

    def sas_precheck(self, ops: "tuple[str, ...]") -> None:
        """Raise :class:`AccessDeniedError` if the SAS itself shows it cannot work for *ops*."""
        sas = self.auth.sas
        if sas is None:
            return
        if sas.is_expired():
            raise AccessDeniedError(self._expired_message(sas))
        if sas.not_yet_valid():
            raise AccessDeniedError(
                f"{self.auth.label} is not valid before {_fmt_time(sas.start)}; "
                "wait, or check this machine's clock and the SAS start time"
            )
        missing = [PERMISSIONS[op] for op in ops if op in PERMISSIONS and sas.lacks(PERMISSIONS[op][0])]
        if missing:
            raise AccessDeniedError(self._lacks_message(missing))

    # -- helpers --------------------------------------------------------------

    def _what(self, op: str, name: Optional[str]) -> str:
        if name is None:
            return f"{op} container '{self.container}' in account '{self.account}'"
        return f"{op} blob '{name}' in container '{self.container}'"

    def _lacks_message(self, missing: "list[tuple[str, str]]") -> str:
        letters = " or ".join(f"'{letter}' ({word})" for letter, word in missing)
        return (
            f"{self.auth.label} has no {letters} permission on container '{self.container}'; "
            f"create a SAS with {RECOMMENDED_SAS_PERMISSIONS}"
        )

    def _expired_message(self, sas: SasInfo) -> str:
        return (
            f"{self.auth.label} expired at {_fmt_time(sas.expiry)}; "
            f"create a new SAS for container '{self.container}' with {RECOMMENDED_SAS_PERMISSIONS}"
        )

    def _denied(self, status: int, code: str, body: str, op: str) -> str:
        auth = self.auth
        letter, word = PERMISSIONS.get(op, ("", op))
        detail = _auth_detail(body) or _server_message(body)
        why = code + (f": {detail}" if detail else "")
        if op == "create":
            return redact(
                f"{auth.label} may not create container '{self.container}' in account '{self.account}' ({why}); "
                "create the container first (portal, az storage container create) or use an account-level credential"
            )
        if auth.mode == "sas":
            sas = auth.sas
            if sas is not None and sas.is_expired():
                return self._expired_message(sas)
            if code == "AuthorizationPermissionMismatch" and letter:
                return self._lacks_message([(letter, word)])
            if code == "AuthorizationResourceTypeMismatch":
                return (f"{auth.label} is an account SAS without access to containers and objects; "
                        f"create one with srt=co and {RECOMMENDED_SAS_PERMISSIONS}")
            if code == "AuthorizationServiceMismatch":
                return f"{auth.label} does not cover the blob service; create a SAS with ss=b"
            if code == "AuthorizationSourceIPMismatch":
                return f"{auth.label} does not allow this machine's IP address; widen or drop its IP range (sip)"
            if code == "AuthorizationProtocolMismatch":
                return f"{auth.label} allows HTTPS only but the endpoint is {self.endpoint_url}; use https"
            return redact(
                f"{auth.label} was rejected by account '{self.account}' ({why}); it may be expired or revoked, "
                f"signed for another account or container, mistyped, or blocked by the account firewall; "
                f"create a new SAS with {RECOMMENDED_SAS_PERMISSIONS}"
            )
        if auth.mode == "key":
            if code == "KeyBasedAuthenticationNotPermitted":
                return (f"account '{self.account}' does not allow shared key access; "
                        "use Azure AD (azure-ad) or a user delegation SAS")
            return redact(
                f"{auth.label} was rejected by account '{self.account}' ({why}); check that the key is "
                "current and belongs to this account, and that the account firewall admits this machine"
            )
        # Azure AD
        if status == 403 and code == "AuthorizationPermissionMismatch":
            return (f"{auth.label} may not {word} blobs in container '{self.container}'; assign it the "
                    "'Storage Blob Data Contributor' role on the container or account (changes take minutes)")
        return redact(
            f"{auth.label} was rejected by account '{self.account}' ({why}); sign in again (az login), "
            "check the tenant, the role assignment and the account firewall"
        )

    def _classify_transport(self, exc: BaseException, op: str, name: Optional[str]) -> Failure:
        what = self._what(op, name)
        text = _first_line(exc)
        if "non-TLS" in text:
            return Failure(False, TargetConfigError(
                f"{self.auth.label} needs an https endpoint, but the endpoint is {self.endpoint_url}"))
        if _is_identity_error(exc):
            return Failure(False, AccessDeniedError(redact(
                f"Azure AD sign-in failed ({text}); sign in with az login, set AZURE_TENANT_ID/"
                "AZURE_CLIENT_ID/AZURE_CLIENT_SECRET, or use a managed identity")))
        if _is_network_error(exc):
            return Failure(True, TransientError(redact(
                f"{what}: cannot reach {self.endpoint_url} ({type(exc).__name__}: {text}); "
                "check the network, the endpoint name, proxies and firewalls")), detail=type(exc).__name__)
        return Failure(False, TargetError(redact(f"{what}: {type(exc).__name__}: {text}")))


def _is_http_error(exc: BaseException) -> bool:
    try:
        from azure.core.exceptions import HttpResponseError
    except ImportError:  # pragma: no cover - azure-core is a dependency
        return False
    return isinstance(exc, HttpResponseError)


def _is_identity_error(exc: BaseException) -> bool:
    try:
        from azure.core.exceptions import ClientAuthenticationError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, ClientAuthenticationError)


def _is_network_error(exc: BaseException) -> bool:
    """True if *exc*, or an error it wraps, is a connection problem: a reset, a timeout, a broken body.

    The SDKs wrap such errors: a body cut short (a truncated answer) reaches
    us from azure-core as an ``HttpResponseError`` without a status whose
    ``inner_exception`` is the transport's error, and azure-storage-blob's
    downloader wraps that once more after its own attempts. So the wrapped
    errors (``inner_exception``, then ``__cause__``) are checked too.
    """
    return any(_is_network_error_alone(link) for link in _wrapped_chain(exc))


def _wrapped_chain(exc: BaseException, limit: int = 8) -> "list[BaseException]":
    """*exc* and the errors it wraps (``inner_exception`` first, else ``__cause__``), at most *limit*."""
    chain: "list[BaseException]" = []
    current: Optional[BaseException] = exc
    while current is not None and len(chain) < limit and all(current is not seen for seen in chain):
        chain.append(current)
        inner = getattr(current, "inner_exception", None)
        current = inner if isinstance(inner, BaseException) else current.__cause__
    return chain


def _is_network_error_alone(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError, asyncio.TimeoutError, OSError)):
        return True
    try:
        from azure.core.exceptions import IncompleteReadError, ServiceRequestError, ServiceResponseError
    except ImportError:  # pragma: no cover
        return False
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, IncompleteReadError)):
        return True
    try:
        import aiohttp
    except ImportError:
        return False
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        return True
    try:
        from urllib3.exceptions import ProtocolError
    except ImportError:  # pragma: no cover - requests depends on urllib3
        return False
    return isinstance(exc, ProtocolError)  # "Connection broken: ..." while reading a body


def _error_code(exc: BaseException) -> str:
    code = getattr(exc, "error_code", None)
    if code is None:
        return _headers(exc).get("x-ms-error-code", "")
    return str(getattr(code, "value", code))


def _headers(exc: BaseException) -> Mapping[str, str]:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return {}
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _auth_detail(body: str) -> str:
    match = _AUTH_DETAIL_RE.search(body or "")
    return redact(" ".join(match.group(1).split())) if match else ""


def _server_message(body: str) -> str:
    match = _MESSAGE_RE.search(body or "")
    return redact(" ".join(match.group(1).split())) if match else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact(text[0][:300]) if text else ""


def _fmt_time(when: object) -> str:
    strftime = getattr(when, "strftime", None)
    return strftime("%Y-%m-%d %H:%M:%S UTC") if strftime else "an unknown time"
