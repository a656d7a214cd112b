"""Authorising a request the way Blob storage does: a service SAS, or a SharedKey signature.

Both checks recompute the HMAC-SHA256 the service computes from the
account key and compare it with what the client sent; a mismatch is
``403 AuthenticationFailed``. A SAS is also checked for its start and expiry
and for the permission letter the operation needs
(``403 AuthorizationPermissionMismatch``); a SharedKey request for the
freshness of its ``x-ms-date``/``Date`` (15 minutes, as the service).

A valid SAS is remembered by its query string (the loader sends one token
with every request), so the signature is computed once per token; its times
and permissions are still checked on every request. SharedKey requests (the
SDK's container calls and listings) are verified one by one.
"""

from __future__ import annotations

import base64
import calendar
import email.utils
import hashlib
import hmac
import time
import urllib.parse
from typing import Dict, NamedTuple, Optional

__all__ = ["Denied", "SasGrant", "check_sas", "check_shared_key", "parse_key", "sas_allows", "split_query", "strip_sas"]

#: Oldest service SAS version whose string-to-sign is implemented (all fields up to ``ses``).
_MIN_SAS_VERSION = "2020-12-06"
#: How far a SharedKey request's date may be from now (seconds), as in the service.
_CLOCK_SKEW = 15 * 60
#: Standard headers in the SharedKey string-to-sign, in order.
_SIGNED_HEADERS = (b"content-encoding", b"content-language", b"content-length", b"content-md5", b"content-type",
                   b"date", b"if-modified-since", b"if-match", b"if-none-match", b"if-unmodified-since", b"range")
_SAS_FIELDS = frozenset(("sv", "ss", "srt", "sp", "se", "st", "sip", "spr", "sig", "sr", "si", "ses", "sdd",
                         "rscc", "rscd", "rsce", "rscl", "rsct", "skoid", "sktid", "skt", "ske", "sks", "skv"))


class Denied(Exception):
    """The request is not authorised: ``status`` and Azure's error ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class SasGrant(NamedTuple):
    """What a verified SAS allows: its container (and blob for ``sr=b``), letters, validity window."""

    container: str
    blob: Optional[str]
    permissions: str
    start: float
    expiry: float


def split_query(query: str) -> Dict[str, str]:
    """``a=1&b=%2F`` -> ``{"a": "1", "b": "/"}`` (names as sent, values decoded)."""
    out: Dict[str, str] = {}
    if not query:
        return out
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        out[name] = urllib.parse.unquote(value) if "%" in value or "+" in value else value
    return out


def _sign(key: bytes, text: str) -> str:
    return base64.b64encode(hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()).decode()


def _iso_time(text: str) -> float:
    """SAS times: ``2026-12-07T03:04:41Z`` (seconds optional, fractions allowed)."""
    text = text.rstrip("Z")
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return float(calendar.timegm(time.strptime(text.split(".")[0], fmt)))
        except ValueError:
            continue
    raise Denied(403, "AuthenticationFailed", "signed time %r is not ISO 8601" % text)


def check_sas(fields: Dict[str, str], account: str, key: bytes, container: str, blob: Optional[str]) -> SasGrant:
    """Verify a service SAS (container ``sr=c`` or blob ``sr=b``); return what it grants, or raise Denied."""
    version = fields.get("sv", "")
    resource = fields.get("sr")
    if "si" in fields:
        raise Denied(403, "AuthenticationFailed", "stored access policies (si=) are not supported by the sink")
    if resource not in ("c", "b") or version < _MIN_SAS_VERSION:
        raise Denied(403, "AuthenticationFailed",
                     "only service SAS tokens (sr=c or sr=b, sv >= %s) are supported" % _MIN_SAS_VERSION)
    canonical = "/blob/%s/%s" % (account, container if resource == "c" else "%s/%s" % (container, blob))
    get = fields.get
    string_to_sign = "\n".join((
        get("sp", ""), get("st", ""), get("se", ""), canonical, get("si", ""), get("sip", ""), get("spr", ""),
        version, resource, get("snapshot", ""), get("ses", ""),
        get("rscc", ""), get("rscd", ""), get("rsce", ""), get("rscl", ""), get("rsct", "")))
    if not hmac.compare_digest(_sign(key, string_to_sign), get("sig", "")):
        raise Denied(403, "AuthenticationFailed", "Signature did not match. String to sign used was " +
                     string_to_sign.replace("\n", "\\n"))
    start = _iso_time(fields["st"]) if fields.get("st") else 0.0
    if not fields.get("se"):
        raise Denied(403, "AuthenticationFailed", "the SAS has no expiry (se)")
    return SasGrant(container, blob if resource == "b" else None, get("sp", ""), start, _iso_time(fields["se"]))


def sas_allows(grant: SasGrant, container: str, blob: Optional[str], letter: str, now: float) -> None:
    """Raise Denied unless *grant* covers *letter* on container/blob at *now*."""
    if now < grant.start - 1 or now >= grant.expiry:
        raise Denied(403, "AuthenticationFailed", "Signed expiry time or start time is not valid now")
    if grant.container != container or (grant.blob is not None and grant.blob != blob):
        raise Denied(403, "AuthenticationFailed", "the SAS is for another resource")
    if letter not in grant.permissions:
        raise Denied(403, "AuthorizationPermissionMismatch",
                     "This request is not authorized to perform this operation using this permission.")


def check_shared_key(method: str, raw_path: str, query: Dict[str, str], headers: Dict[bytes, bytes],
                     account: str, key: bytes) -> None:
    """Verify ``Authorization: SharedKey account:signature``; raise Denied if it does not match."""
    auth = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, credential = auth.partition(" ")
    name, _, signature = credential.partition(":")
    if scheme != "SharedKey" or name != account or not signature:
        raise Denied(403, "AuthenticationFailed", "Authorization header is not SharedKey %s:..." % account)
    stamp = headers.get(b"x-ms-date") or headers.get(b"date")
    if not stamp:
        raise Denied(403, "AuthenticationFailed", "Request date header not specified")
    try:
        when = email.utils.parsedate_to_datetime(stamp.decode("latin-1")).timestamp()
    except (TypeError, ValueError):
        raise Denied(403, "AuthenticationFailed", "Request date header is not RFC 1123") from None
    if abs(time.time() - when) > _CLOCK_SKEW:
        raise Denied(403, "AuthenticationFailed", "Request date header too old or too far in the future")
    parts = [method]
    for header in _SIGNED_HEADERS:
        value = headers.get(header, b"")
        if header == b"content-length" and value == b"0":
            value = b""
        parts.append(value.decode("latin-1"))
    text = "\n".join(parts) + "\n"
    for header in sorted(h for h in headers if h.startswith(b"x-ms-")):
        text += "%s:%s\n" % (header.decode("latin-1"), headers[header].decode("latin-1"))
    text += "/%s%s" % (account, raw_path)
    for qname in sorted(query):
        text += "\n%s:%s" % (qname.lower(), query[qname])
    if not hmac.compare_digest(_sign(key, text), signature):
        raise Denied(403, "AuthenticationFailed", "Signature did not match. String to sign used was " +
                     text.replace("\n", "\\n"))


def strip_sas(fields: Dict[str, str]) -> Dict[str, str]:
    """The request's own query parameters: *fields* less the SAS ones."""
    return {k: v for k, v in fields.items() if k not in _SAS_FIELDS}


def parse_key(text: str) -> bytes:
    """The account key, base64 as Azure shows it, to raw bytes."""
    return base64.b64decode(text)
