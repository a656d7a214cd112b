"""The sink's HTTP side: one asyncio protocol per connection (httptools' C parser), the Blob calls, the delay.

Each request is parsed, authorised and carried out as soon as it is
complete; its answer is then written after ``delay`` seconds by an event
loop timer (``call_later``), so a waiting request costs no CPU and no
thread. With a bandwidth cap the answer waits, in addition, until a shared
virtual clock has let its request and answer bodies through at that rate.

Calls (anything else is answered ``400 UnsupportedBySink`` and logged as an
error on stderr, and counted in the stats, so a client path the sink does
not know is seen, not silently accepted):

* container ``?restype=container``: Create (PUT), Get Properties
  (GET/HEAD), Delete (DELETE); List Blobs (GET ``&comp=list`` with
  ``prefix``, ``marker``, ``maxresults``; ``include`` is accepted and
  ignored, ``delimiter`` is not supported);
* blob: Put Blob (PUT, ``x-ms-blob-type: BlockBlob``, ``If-Match`` and
  ``If-None-Match``), Get Blob and Get Blob Properties (GET/HEAD, with
  ``x-ms-range`` or ``Range``), Delete Blob (DELETE).

``GET /_sink/stats`` (no account, no auth) answers the counters as JSON.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import sys
import time
import urllib.parse
from typing import Callable, Dict, List, Optional, Tuple

import httptools

from .auth import Denied, SasGrant, check_sas, check_shared_key, sas_allows, split_query, strip_sas
from .store import MAX_PAGE, Container

__all__ = ["Sink"]

_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 206: "Partial Content", 304: "Not Modified",
            400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            409: "Conflict", 412: "Precondition Failed", 416: "Range Not Satisfiable", 500: "Internal Server Error"}
#: The API version the sink answers with (any request version is accepted).
_VERSION = "2025-01-05"
#: Verified SAS tokens remembered at most (then forgotten all at once).
_SAS_CACHE = 4096


class _Clock:
    """The Date / Last-Modified text, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._text = email.utils.formatdate(second, usegmt=True)
        return self._text


class _Answer(Exception):
    """An error answer: raised by a handler, written by the protocol."""

    def __init__(self, status: int, code: str, message: str, extra: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.extra = extra


class Sink:
    """The sink's state and its Blob calls, shared by every connection.

    ``delay``: seconds before each answer; ``bandwidth``: bytes per second
    for request and answer bodies together (0: no cap); ``keep_data``:
    False keeps only each blob's length (reads then fail with 500).
    """

    def __init__(self, account: str, key: bytes, *, delay: float = 0.0, bandwidth: float = 0.0,
                 keep_data: bool = True, endpoint: str = "") -> None:
        self.account = account
        self.key = key
        self.delay = delay
        self.bandwidth = bandwidth
        self.keep_data = keep_data
        self.endpoint = endpoint
        self.containers: Dict[str, Container] = {}
        self.clock = _Clock()
        self.stats = {"requests": 0, "puts": 0, "gets": 0, "deletes": 0, "lists": 0, "denied": 0,
                      "unsupported": 0, "errors": 0, "bytes_in": 0, "bytes_out": 0, "in_flight": 0,
                      "peak_in_flight": 0, "in_flight_seconds": 0.0}
        self._in_flight_since = time.monotonic()
        self._sas: Dict[str, SasGrant] = {}
        self._etag = int(time.time() * 1e7) << 8
        self._wire_free = 0.0  # the bandwidth cap's virtual clock

    # -- helpers ---------------------------------------------------------------------

    def held(self, change: int) -> None:
        """One more (+1) or one fewer (-1) answer held; keeps the peak and the time integral of the count.

        ``in_flight_seconds`` / a run's wall time is its mean number of requests in flight.
        """
        stats = self.stats
        now = time.monotonic()
        stats["in_flight_seconds"] += stats["in_flight"] * (now - self._in_flight_since)
        self._in_flight_since = now
        stats["in_flight"] += change
        if stats["in_flight"] > stats["peak_in_flight"]:
            stats["peak_in_flight"] = stats["in_flight"]

    def next_etag(self) -> str:
        """A fresh ETag (bare, as in listings)."""
        self._etag += 1
        return "0x%X" % self._etag

    def hold(self, nbytes: int) -> float:
        """Seconds to hold an answer: the delay, plus the wait the bandwidth cap puts on *nbytes*."""
        if not self.bandwidth:
            return self.delay
        now = time.monotonic()
        self._wire_free = max(self._wire_free, now) + nbytes / self.bandwidth
        return self.delay + (self._wire_free - now)

    def _authorise(self, method: str, raw_path: str, query: str, fields: Dict[str, str],
                   headers: Dict[bytes, bytes], container: str, blob: Optional[str], letter: str) -> None:
        if "sig" in fields:
            key = query if blob is None else "%s\0%s" % (query, container)
            grant = self._sas.get(key)
            if grant is None:
                grant = check_sas(fields, self.account, self.key, container, blob)
                if len(self._sas) >= _SAS_CACHE:
                    self._sas.clear()
                self._sas[key] = grant
            sas_allows(grant, container, blob, letter, time.time())
        elif b"authorization" in headers:
            check_shared_key(method, raw_path, fields, headers, self.account, self.key)
        else:
            raise Denied(401, "NoAuthenticationInformation",
                         "Server failed to authenticate the request. Please refer to the information in the "
                         "www-authenticate header.")

    # -- one request -------------------------------------------------------------------

    def handle(self, method: str, url: bytes, headers: Dict[bytes, bytes], body: bytes) -> Tuple[int, str, bytes]:
        """Carry out one request; returns (status, extra header lines, body)."""
        target = url.decode("latin-1")
        raw_path, _, query = target.partition("?")
        if raw_path == "/_sink/stats":
            return 200, "Content-Type: application/json\r\n", json.dumps(self.stats).encode()
        path = urllib.parse.unquote(raw_path) if "%" in raw_path else raw_path
        parts = path.split("/", 3)  # "", account, container, blob
        if len(parts) < 3 or parts[1] != self.account or not parts[2]:
            raise _Answer(400, "InvalidUri", "The requested URI does not represent any resource on the server.")
        container = parts[2]
        blob = parts[3] if len(parts) == 4 and parts[3] else None
        fields = split_query(query)
        own = strip_sas(fields) if "sig" in fields else fields
        kind, letter = self._classify(method, blob, own)
        if kind is None:
            self.stats["unsupported"] += 1
            print("blobsink: unsupported call %s %s?%s" % (method, raw_path, "&".join(sorted(own))),
                  file=sys.stderr, flush=True)
            raise _Answer(400, "UnsupportedBySink", "the benchmark sink does not implement this call")
        self._authorise(method, raw_path, query, fields, headers, container, blob, letter)
        return kind(container, blob, own, headers, body, method)

    def _classify(self, method: str, blob: Optional[str], own: Dict[str, str]
                  ) -> Tuple[Optional[Callable], str]:
        """The handler of a call and the SAS permission it needs; (None, "") if unsupported."""
        if blob is not None:
            if own:
                return None, ""
            if method == "PUT":
                return self._put_blob, "w"
            if method in ("GET", "HEAD"):
                return self._get_blob, "r"
            if method == "DELETE":
                return self._delete_blob, "d"
            return None, ""
        if own.get("restype") != "container":
            return None, ""
        comp = own.get("comp")
        if comp == "list" and method == "GET" and "delimiter" not in own:
            return self._list_blobs, "l"
        if comp is None:
            if method == "PUT":
                return self._create_container, "c"
            if method in ("GET", "HEAD"):
                return self._container_properties, "r"
            if method == "DELETE":
                return self._delete_container, "d"
        return None, ""

    def _container(self, name: str) -> Container:
        found = self.containers.get(name)
        if found is None:
            raise _Answer(404, "ContainerNotFound", "The specified container does not exist.")
        return found

    def _put_blob(self, container: str, blob: str, own, headers, body: bytes, method: str):
        box = self._container(container)
        if headers.get(b"x-ms-blob-type") != b"BlockBlob":
            raise _Answer(400, "InvalidHeaderValue", "only x-ms-blob-type: BlockBlob is supported")
        old = box.blobs.get(blob)
        match = headers.get(b"if-match")
        if match is not None and (old is None or (match != b"*" and match.strip(b'"').decode() != old[1])):
            if old is None:
                raise _Answer(404, "BlobNotFound", "The specified blob does not exist.")
            raise _Answer(412, "ConditionNotMet", "The condition specified using HTTP conditional header(s) is not met.")
        none_match = headers.get(b"if-none-match")
        if none_match is not None and old is not None and (none_match == b"*" or
                                                           none_match.strip(b'"').decode() == old[1]):
            raise _Answer(409, "BlobAlreadyExists", "The specified blob already exists.")
        etag = self.next_etag()
        modified = self.clock.now()
        box.put(blob, body if self.keep_data else len(body), etag, modified)
        self.stats["puts"] += 1
        return 201, 'ETag: "%s"\r\nLast-Modified: %s\r\nx-ms-request-server-encrypted: true\r\n' % (etag, modified), b""

    def _get_blob(self, container: str, blob: str, own, headers, body: bytes, method: str):
        found = self._container(container).blobs.get(blob)
        if found is None:
            raise _Answer(404, "BlobNotFound", "The specified blob does not exist.")
        data, etag, modified = found
        if isinstance(data, int):
            raise _Answer(500, "InternalError", "the sink keeps no data (started with --no-data)")
        size = len(data)
        extra = ('ETag: "%s"\r\nLast-Modified: %s\r\nx-ms-creation-time: %s\r\nx-ms-blob-type: BlockBlob\r\n'
                 "x-ms-lease-status: unlocked\r\nx-ms-lease-state: available\r\nx-ms-server-encrypted: true\r\n"
                 "Accept-Ranges: bytes\r\nContent-Type: application/octet-stream\r\n" % (etag, modified, modified))
        wanted = headers.get(b"x-ms-range") or headers.get(b"range")
        status = 200
        if wanted:
            start, end = _parse_range(wanted)
            if start >= size:
                raise _Answer(416, "InvalidRange", "The range specified is invalid for the current size of the "
                              "resource.", "Content-Range: bytes */%d\r\n" % size)
            end = size - 1 if end is None else min(end, size - 1)
            extra += "Content-Range: bytes %d-%d/%d\r\n" % (start, end, size)
            data = data[start:end + 1]
            status = 206
        self.stats["gets"] += 1
        if method == "HEAD":
            return status, extra + "Content-Length: %d\r\n" % len(data), None
        return status, extra, data

    def _delete_blob(self, container: str, blob: str, own, headers, body: bytes, method: str):
        if not self._container(container).delete(blob):
            raise _Answer(404, "BlobNotFound", "The specified blob does not exist.")
        self.stats["deletes"] += 1
        return 202, "x-ms-delete-type-permanent: true\r\n", b""

    def _list_blobs(self, container: str, blob, own: Dict[str, str], headers, body: bytes, method: str):
        box = self._container(container)
        size_text = own.get("maxresults")
        try:
            size = min(int(size_text), MAX_PAGE) if size_text else MAX_PAGE
        except ValueError:
            raise _Answer(400, "InvalidQueryParameterValue", "maxresults is not a number") from None
        if size < 1:
            raise _Answer(400, "OutOfRangeQueryParameterValue", "maxresults must be at least 1")
        page = box.list_page(self.endpoint, own.get("prefix", ""), own.get("marker", ""), size,
                             (own.get("prefix"), own.get("marker"), size_text))
        self.stats["lists"] += 1
        return 200, "Content-Type: application/xml\r\n", page

    def _create_container(self, container: str, blob, own, headers, body: bytes, method: str):
        if container in self.containers:
            raise _Answer(409, "ContainerAlreadyExists", "The specified container already exists.")
        etag, modified = self.next_etag(), self.clock.now()
        self.containers[container] = Container(container, etag, modified)
        return 201, 'ETag: "%s"\r\nLast-Modified: %s\r\n' % (etag, modified), b""

    def _container_properties(self, container: str, blob, own, headers, body: bytes, method: str):
        box = self._container(container)
        extra = ('ETag: "%s"\r\nLast-Modified: %s\r\nx-ms-lease-status: unlocked\r\nx-ms-lease-state: available\r\n'
                 "x-ms-has-immutability-policy: false\r\nx-ms-has-legal-hold: false\r\n" % (box.etag, box.created))
        return 200, extra, b""

    def _delete_container(self, container: str, blob, own, headers, body: bytes, method: str):
        self._container(container)
        del self.containers[container]
        return 202, "", b""

    # -- the answer -------------------------------------------------------------------------

    def answer(self, status: int, extra: str, body: Optional[bytes], keep_alive: bool) -> List[bytes]:
        """The answer's bytes: head (with Content-Length unless *extra* has it) and body."""
        stats = self.stats
        stats["requests"] += 1
        head = "HTTP/1.1 %d %s\r\nServer: blobsink\r\nx-ms-version: %s\r\nx-ms-request-id: %08x-0000-0000-0000-000000000000\r\nDate: %s\r\n%s" % (
            status, _REASONS.get(status, "Status"), _VERSION, stats["requests"], self.clock.now(), extra)
        if body is not None:
            head += "Content-Length: %d\r\n" % len(body)
        if not keep_alive:
            head += "Connection: close\r\n"
        head += "\r\n"
        if body:
            stats["bytes_out"] += len(body)
            return [head.encode("latin-1"), body]
        return [head.encode("latin-1")]

    def error(self, exc: "_Answer | Denied", method: str, keep_alive: bool) -> List[bytes]:
        """An Azure-style error answer (XML body unless HEAD)."""
        if isinstance(exc, Denied):
            self.stats["denied"] += 1
        else:
            self.stats["errors"] += 1
        extra = "x-ms-error-code: %s\r\n%s" % (exc.code, getattr(exc, "extra", ""))
        if method == "HEAD":
            return self.answer(exc.status, extra + "Content-Length: 0\r\n", None, keep_alive)
        body = ('<?xml version="1.0" encoding="utf-8"?><Error><Code>%s</Code><Message>%s\nRequestId:%08x\nTime:%s'
                "</Message></Error>" % (exc.code, str(exc).replace("&", "&amp;").replace("<", "&lt;"),
                                        self.stats["requests"] + 1, self.clock.now())).encode()
        return self.answer(exc.status, extra + "Content-Type: application/xml\r\n", body, keep_alive)


def _parse_range(text: bytes) -> Tuple[int, Optional[int]]:
    value = text.decode("latin-1").strip()
    if not value.startswith("bytes="):
        raise _Answer(400, "InvalidRange", "the range must be bytes=START-[END]")
    first, _, last = value[6:].partition("-")
    try:
        start = int(first)
        end = int(last) if last else None
    except ValueError:
        raise _Answer(400, "InvalidRange", "the range must be bytes=START-[END]") from None
    if end is not None and end < start:
        raise _Answer(416, "InvalidRange", "the range is empty")
    return start, end


class Connection(asyncio.Protocol):
    """One client connection: parse requests, hand them to the :class:`Sink`, write answers after the delay."""

    __slots__ = ("_sink", "_loop", "_transport", "_parser", "_url", "_headers", "_body", "_closing")

    def __init__(self, sink: Sink, loop: asyncio.AbstractEventLoop) -> None:
        self._sink = sink
        self._loop = loop
        self._transport: Optional[asyncio.Transport] = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: Dict[bytes, bytes] = {}
        self._body: List[bytes] = []
        self._closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._send(self._sink.error(_Answer(400, "InvalidInput", "malformed HTTP request"), "GET", False),
                       False)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._closing = True

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        sink = self._sink
        parser = self._parser
        method = parser.get_method().decode()
        keep_alive = parser.should_keep_alive()
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        sink.stats["bytes_in"] += len(body)
        try:
            status, extra, answer = sink.handle(method, self._url, self._headers, body)
            out = sink.answer(status, extra, None if method == "HEAD" else answer, keep_alive)
        except (_Answer, Denied) as exc:
            out = sink.error(exc, method, keep_alive)
        except Exception as exc:  # noqa: BLE001 - a bug of the sink: answer 500, say so
            print("blobsink: internal error on %s: %r" % (method, exc), file=sys.stderr, flush=True)
            out = sink.error(_Answer(500, "InternalError", "sink bug: %r" % exc), method, keep_alive)
        hold = sink.hold(len(body) + sum(len(b) for b in out)) if sink.bandwidth else sink.delay
        if hold > 0:
            sink.held(1)
            self._loop.call_later(hold, self._send_held, out, keep_alive)
        else:
            self._send(out, keep_alive)

    def _send_held(self, out: List[bytes], keep_alive: bool) -> None:
        self._sink.held(-1)
        self._send(out, keep_alive)

    def _send(self, out: List[bytes], keep_alive: bool) -> None:
        transport = self._transport
        if self._closing or transport is None or transport.is_closing():
            return
        if len(out) == 1:
            transport.write(out[0])
        else:
            transport.writelines(out)
        if not keep_alive:
            self._closing = True
            transport.close()
