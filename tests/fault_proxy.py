"""A fault-injecting HTTP/1.1 reverse proxy for end-to-end tests against Azurite.

:class:`FaultProxy` listens on 127.0.0.1 (a free port) and forwards every
request to one upstream endpoint (Azurite) unchanged: same request line,
same headers (Host included: neither a SAS nor a Shared Key signature covers
the host), same body. It runs an asyncio loop in a daemon thread of the test
process, so a test configures it and reads its counters directly while
``python -m clfsload`` talks to it from subprocesses.

Faults are :class:`Fault` rules, set with :meth:`FaultProxy.configure`. For
each request the proxy walks the rules in order; the first rule whose filters
(HTTP method, predicate on the path, minimum Content-Length) match, whose
limit is not reached and whose draw from the proxy's
seeded RNG falls under its ``fraction`` decides the fault. The kinds:

============  ================================================================
``500``       answer 500 InternalError (the request is not forwarded)
``503``       answer 503 ServerBusy (not forwarded)
``429``       answer 429 with ``Retry-After: <retry_after>`` (not forwarded)
``403``       answer 403 AuthenticationFailed (not forwarded)
``reset``     close the socket with a TCP RST and no answer; ``stage`` says when
``stall``     hold the request ``seconds`` without answering, then reset
``truncate``  forward, then send the answer's headers with a Content-Length
              and only half of the body (nothing of an empty one), then close
============  ================================================================

``stage`` (reset and stall): ``head`` right after the request head, before
the body is read (a client still sending a large body gets the reset);
``request`` after the whole request was read, without forwarding it;
``response`` after Azurite answered, so the request took effect but its
answer is lost.

Besides the rules, :meth:`FaultProxy.deny` switches on a permanent 403
AuthenticationFailed (Azure's XML error body) for every request, at once or
from the first request a trigger predicate matches, until switched off.

:meth:`FaultProxy.stats` returns the requests seen and the faults injected
per kind; a fault is counted only when it was really applied.

Invariants: one upstream connection per client connection, never shared,
so answers cannot cross; a client connection is closed after any fault
except the status answers (which keep it alive, as Azure does); the proxy
never resends a request upstream, except once when a kept-alive upstream
connection failed before any byte of the answer (Node closes idle sockets).
A ``truncate`` rule lets HEAD answers through (they have no body).
"""

from __future__ import annotations

import asyncio
import collections
import random
import socket
import struct
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from email.utils import formatdate
from typing import Callable, Collection, Counter, Dict, List, Optional, Sequence, Tuple

__all__ = ["Fault", "FaultProxy", "ProxyStats", "FAULT_KINDS", "STATUS_KINDS"]

#: kinds answered by the proxy itself with an Azure-style error
STATUS_KINDS = ("500", "503", "429")
#: every rule kind
FAULT_KINDS = STATUS_KINDS + ("reset", "stall", "truncate")
#: the kind :meth:`FaultProxy.deny` applies and counts under (also usable in a rule)
DENIED = "403"
_KINDS = FAULT_KINDS + (DENIED,)
_ANSWERED = STATUS_KINDS + (DENIED,)  # kinds the proxy answers itself
_BREAKS = ("reset", "stall")  # kinds that end the connection without an answer
_STAGES = ("head", "request", "response")
_MAX_HEAD = 256 * 1024
# An upstream connection idle longer than this is replaced before use: Node
# (Azurite) closes idle keep-alive sockets after 5 s, and a request sent just
# as it does would be lost.
_UPSTREAM_IDLE_S = 2.0

_ERRORS = {
    "500": ("Internal Server Error", "InternalError",
            "The server encountered an internal error. Please retry the request."),
    "503": ("Service Unavailable", "ServerBusy",
            "The server is currently unable to receive requests. Please retry your request."),
    "429": ("Too Many Requests", "ServerBusy",
            "Operations per second is over the account limit."),
    DENIED: ("Server failed to authenticate the request", "AuthenticationFailed",
             "Server failed to authenticate the request. Make sure the value of Authorization header "
             "is formed correctly including the signature."),
}


@dataclass(frozen=True)
class Fault:
    """One fault rule: apply *kind* to about *fraction* of the matching requests.

    *methods*: only these HTTP methods (None: any). *path*: a predicate on the
    request path, without the query (None: any). *min_length*: only requests
    whose Content-Length is at least this. *limit*: inject at most this many
    times (counted from :meth:`FaultProxy.configure`). *stage*: when a
    ``reset`` or ``stall`` strikes (see the module docstring). *seconds*: how
    long a stall holds the request. *retry_after*: the ``Retry-After`` of a
    429, in seconds.
    """

    kind: str
    fraction: float
    methods: Optional[Collection[str]] = None
    path: Optional[Callable[[str], bool]] = None
    min_length: int = 0
    limit: Optional[int] = None
    stage: str = "request"
    seconds: float = 5.0
    retry_after: int = 1

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {_KINDS}")
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError("fraction must be within [0, 1]")
        if self.stage not in _STAGES:
            raise ValueError(f"unknown stage {self.stage!r}; one of {_STAGES}")

    def matches(self, method: str, path: str, length: int) -> bool:
        """True if the request passes this rule's filters (the draw and the limit aside)."""
        if self.methods is not None and method not in self.methods:
            return False
        if length < self.min_length:
            return False
        return self.path is None or bool(self.path(path))


@dataclass(frozen=True)
class ProxyStats:
    """A snapshot of the counters: requests seen, faults injected per kind."""

    requests: int
    faults: Dict[str, int]

    @property
    def injected(self) -> int:
        """All faults injected, every kind together."""
        return sum(self.faults.values())

    def __str__(self) -> str:
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.faults.items())) or "none"
        return f"{self.injected} faults injected out of {self.requests} requests ({kinds})"


@dataclass
class _Request:
    """A parsed request: the raw head is what gets forwarded."""

    method: str
    path: str
    head: bytes
    headers: List[Tuple[str, str]]
    keep_alive: bool

    def header(self, name: str) -> Optional[str]:
        """The first value of header *name* (any case), or None."""
        return _get(self.headers, name)


@dataclass
class _Response:
    """An upstream answer: status line, headers and the whole (de-chunked) body."""

    status_line: bytes
    headers: List[Tuple[str, str]]
    body: bytes
    chunked: bool
    keep_alive: bool


class _UpstreamLost(Exception):
    """The upstream connection failed; whether any answer byte arrived says if a resend is safe."""

    def __init__(self, answered: bool) -> None:
        super().__init__("upstream connection lost")
        self.answered = answered


class FaultProxy:
    """The proxy; use as a context manager or call :meth:`start` and :meth:`stop`.

    *upstream*: the endpoint URL to forward to, e.g. Azurite's
    ``http://127.0.0.1:PORT/devstoreaccount1``. :attr:`endpoint` is the same
    URL with the proxy's host and port, to give the loader as ACCOUNT.
    """

    def __init__(self, upstream: str, seed: int = 0) -> None:
        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError("upstream must be an http://host:port URL")
        self._upstream = (parts.hostname, parts.port)
        self._upstream_path = parts.path
        self._lock = threading.Lock()
        self._rules: Tuple[Fault, ...] = ()
        self._rule_hits: List[int] = []  # injections per rule, for Fault.limit
        self._rng = random.Random(seed)
        self._denied = False
        self._latency = 0.0
        self._deny_trigger: Optional[Callable[[str, str], bool]] = None
        self._requests = 0
        self._faults: Counter[str] = collections.Counter()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._server: Optional[asyncio.AbstractServer] = None
        self._tasks: "set[asyncio.Task]" = set()
        self.port = 0

    # -- life cycle -------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The proxied endpoint URL (the upstream's path, the proxy's port)."""
        return f"http://127.0.0.1:{self.port}{self._upstream_path}"

    def start(self) -> "FaultProxy":
        """Start listening; returns once the port is bound."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0, limit=_MAX_HEAD))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fault proxy did not start")
        return self

    def stop(self) -> None:
        """Close the listener and every open connection, then stop the thread."""
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()  # stalled requests included: they would sleep on
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None
        self._thread.join(15)
        loop.close()
        self._loop = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- configuration (any thread) ------------------------------------------------

    def configure(self, rules: Sequence[Fault] = (), seed: Optional[int] = None) -> None:
        """Replace the fault rules; with *seed*, restart the RNG from it (a reproducible test)."""
        with self._lock:
            self._rules = tuple(rules)
            self._rule_hits = [0] * len(self._rules)
            if seed is not None:
                self._rng = random.Random(seed)

    def deny(self, on: bool = True, when: Optional[Callable[[str, str], bool]] = None) -> None:
        """Answer 403 AuthenticationFailed to every request while on.

        With *when*, the denial starts at the first request for which
        ``when(method, path)`` is true (that request included) instead of now.
        ``deny(False)`` switches it off and disarms a trigger.
        """
        with self._lock:
            if not on:
                self._denied, self._deny_trigger = False, None
            elif when is None:
                self._denied, self._deny_trigger = True, None
            else:
                self._denied, self._deny_trigger = False, when

    def set_latency(self, seconds: float) -> None:
        """Hold every request ``seconds`` before forwarding it: a far server's round trip.

        Requests on different connections wait concurrently, as on a WAN.
        """
        with self._lock:
            self._latency = max(0.0, seconds)

    def stats(self) -> ProxyStats:
        """The counters so far."""
        with self._lock:
            return ProxyStats(self._requests, dict(self._faults))

    def reset_stats(self) -> ProxyStats:
        """Return the counters and start them again from zero."""
        with self._lock:
            snapshot = ProxyStats(self._requests, dict(self._faults))
            self._requests = 0
            self._faults.clear()
            return snapshot

    # -- decisions (loop thread) ----------------------------------------------------------

    def _choose(self, request: "_Request") -> Optional[Fault]:
        """Count the request and pick its fault: the denial, a rule, or None."""
        method, path = request.method, request.path
        try:
            length = int(request.header("Content-Length") or 0)
        except ValueError:
            length = 0
        with self._lock:
            self._requests += 1
            if self._deny_trigger is not None and self._deny_trigger(method, path):
                self._denied, self._deny_trigger = True, None
            if self._denied:
                return _DENY
            for index, rule in enumerate(self._rules):
                if rule.limit is not None and self._rule_hits[index] >= rule.limit:
                    continue
                # Draw only for matching rules: traffic a rule filters out does not move its odds.
                if rule.matches(method, path, length) and self._rng.random() < rule.fraction:
                    self._rule_hits[index] += 1
                    return rule
            return None

    def _count(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    # -- one client connection -----------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream = _Upstream(*self._upstream)
        try:
            while await self._one_request(reader, writer, upstream):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            _reset(writer)  # a client that went away or spoke garbage: drop it
        except asyncio.CancelledError:
            # Only stop() cancels; the task then ends quietly (asyncio's server
            # callback would report a cancelled task as an error).
            _reset(writer)
        finally:
            upstream.close()
            self._tasks.discard(task)
            if not writer.is_closing():
                writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           upstream: "_Upstream") -> bool:
        """Serve one request; False when the client connection is done."""
        request = await _read_request(reader)
        if request is None:
            return False
        fault = self._choose(request)
        if fault is not None and fault.kind in _BREAKS and fault.stage == "head":
            return await self._break(writer, fault)
        body, chunked = await _read_body(reader, request)
        if fault is not None and fault.kind in _ANSWERED:
            await self._answer_error(writer, request, fault)
            return request.keep_alive
        if fault is not None and fault.kind in _BREAKS and fault.stage == "request":
            return await self._break(writer, fault)
        if self._latency:
            await asyncio.sleep(self._latency)
        try:
            response = await upstream.exchange(request, body, chunked)
        except _UpstreamLost:
            _reset(writer)  # not a fault of ours: the client sees a reset and retries
            return False
        if fault is not None and fault.kind in _BREAKS:
            return await self._break(writer, fault)
        if fault is not None and fault.kind == "truncate" and request.method != "HEAD":
            self._count("truncate")
            writer.write(_truncated(response))
            await writer.drain()
            # A FIN, not a RST: the client must get the partial body and notice it is short
            # (a RST could make it drop what it received and see a plain reset instead).
            writer.close()
            return False
        writer.write(_serialise(response))
        await writer.drain()
        return request.keep_alive and response.keep_alive

    async def _break(self, writer: asyncio.StreamWriter, fault: Fault) -> bool:
        """A reset now, or a stall then a reset; the connection is gone either way."""
        self._count(fault.kind)
        if fault.kind == "stall":
            await asyncio.sleep(fault.seconds)
        _reset(writer)
        return False

    async def _answer_error(self, writer: asyncio.StreamWriter, request: _Request, fault: Fault) -> None:
        self._count(fault.kind)
        reason, code, message = _ERRORS[fault.kind]
        detail = ""
        if fault.kind == DENIED:  # what Azure says about a SAS signed with a key it no longer has
            resource = "/".join(request.path.split("/")[:3])
            detail = ("<AuthenticationErrorDetail>Signature did not match. String to sign used was racwdl\n\n"
                      f"\n/blob{resource}\n\n\n\n2025-01-05\nc\n\n\n\n\n\n</AuthenticationErrorDetail>")
        request_id = uuid.uuid4()
        body = ("<?xml version=\"1.0\" encoding=\"utf-8\"?><Error>"
                f"<Code>{code}</Code><Message>{message}\nRequestId:{request_id}\n"
                f"Time:{time.strftime('%Y-%m-%dT%H:%M:%S.0000000Z', time.gmtime())}</Message>"
                f"{detail}</Error>").encode()
        headers = [
            ("Content-Length", str(len(body))),
            ("Content-Type", "application/xml"),
            ("Server", "fault-proxy"),
            ("x-ms-request-id", str(request_id)),
            ("x-ms-version", request.header("x-ms-version") or "2025-01-05"),
            ("x-ms-error-code", code),
            ("Date", formatdate(usegmt=True)),
        ]
        if fault.kind == "429":
            headers.append(("Retry-After", str(fault.retry_after)))
        if not request.keep_alive:
            headers.append(("Connection", "close"))
        status = int(fault.kind)
        head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        writer.write(head.encode("latin-1") + (b"" if request.method == "HEAD" else body))
        await writer.drain()


#: the rule :meth:`FaultProxy.deny` applies to every request while on
_DENY = Fault(DENIED, 1.0)


class _Upstream:
    """The one upstream connection of one client connection, opened lazily and reopened when stale."""

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._reader: Optional[asyncio.StreamReader] = None
        self._writer: Optional[asyncio.StreamWriter] = None
        self._idle_since = 0.0

    async def exchange(self, request: _Request, body: bytes, chunked: bool) -> _Response:
        """Send the request, read the whole answer; raises _UpstreamLost."""
        reused = self._writer is not None and time.monotonic() - self._idle_since < _UPSTREAM_IDLE_S
        if not reused:
            self.close()
        for attempt in range(2):
            try:
                if self._writer is None:
                    self._reader, self._writer = await asyncio.open_connection(*self._address, limit=_MAX_HEAD)
                return await self._exchange_once(request, body, chunked)
            except _UpstreamLost as lost:
                self.close()
                # Resend only once, and only what never got an answer byte on a reused connection.
                if lost.answered or not reused or attempt:
                    raise
            except OSError:
                self.close()
                raise _UpstreamLost(False) from None
        raise _UpstreamLost(False)  # pragma: no cover - the loop returns or raises

    async def _exchange_once(self, request: _Request, body: bytes, chunked: bool) -> _Response:
        reader, writer = self._reader, self._writer
        assert reader is not None and writer is not None
        try:
            writer.write(request.head)
            if chunked:
                if body:
                    writer.write(b"%x\r\n" % len(body) + body + b"\r\n")
                writer.write(b"0\r\n\r\n")
            else:
                writer.write(body)
            await writer.drain()
            line = await reader.readline()
        except (ConnectionError, OSError):
            raise _UpstreamLost(False) from None
        if not line:
            raise _UpstreamLost(False)
        try:
            response = await _read_response(reader, line, request.method)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError):
            raise _UpstreamLost(True) from None
        if response.keep_alive:
            self._idle_since = time.monotonic()
        else:
            self.close()
        return response

    def close(self) -> None:
        """Drop the connection (a fresh one is opened on the next exchange)."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


# -- HTTP/1.1 framing ----------------------------------------------------------------------


def _parse_headers(lines: List[bytes]) -> List[Tuple[str, str]]:
    headers = []
    for raw in lines:
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise ValueError("malformed header line")
        headers.append((name.strip(), value.strip()))
    return headers


def _get(headers: List[Tuple[str, str]], name: str) -> Optional[str]:
    lowered = name.lower()
    for key, value in headers:
        if key.lower() == lowered:
            return value
    return None


def _is_chunked(headers: List[Tuple[str, str]]) -> bool:
    return "chunked" in (_get(headers, "Transfer-Encoding") or "").lower()


def _keep_alive(version: str, headers: List[Tuple[str, str]]) -> bool:
    connection = (_get(headers, "Connection") or "").lower()
    if version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


async def _read_request(reader: asyncio.StreamReader) -> Optional[_Request]:
    """The next request head, or None at a clean end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise
    lines = head[:-4].split(b"\r\n")
    method, target, version = lines[0].decode("latin-1").split(" ", 2)
    headers = _parse_headers(lines[1:])
    path = urllib.parse.urlsplit(target).path
    return _Request(method, path, head, headers, _keep_alive(version, headers))


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body, de-chunked; trailers are read and dropped."""
    parts: List[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _read_body(reader: asyncio.StreamReader, request: _Request) -> Tuple[bytes, bool]:
    """The request body and whether it came chunked (it is then forwarded chunked)."""
    if _is_chunked(request.headers):
        return await _read_chunked(reader), True
    length = int(request.header("Content-Length") or 0)
    return (await reader.readexactly(length) if length else b""), False


async def _read_head_lines(reader: asyncio.StreamReader) -> List[bytes]:
    """Header lines up to the empty line that ends a head (CRLF stripped)."""
    lines: List[bytes] = []
    while True:
        line = await reader.readline()
        if not line:
            raise asyncio.IncompleteReadError(b"", None)
        if line == b"\r\n":
            return lines
        lines.append(line.rstrip(b"\r\n"))


async def _read_response(reader: asyncio.StreamReader, status_line: bytes, method: str) -> _Response:
    """The rest of an answer whose status line was *status_line*; 1xx interim answers are skipped."""
    while True:
        status_line = status_line.rstrip(b"\r\n")
        version, status_text = status_line.decode("latin-1").split(" ", 2)[:2]
        headers = _parse_headers(await _read_head_lines(reader))
        status = int(status_text)
        if status >= 200:
            break
        status_line = await reader.readline()
    chunked = _is_chunked(headers)
    keep_alive = _keep_alive(version, headers)
    length = _get(headers, "Content-Length")
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif chunked:
        body = await _read_chunked(reader)
    elif length is not None:
        body = await reader.readexactly(int(length))
    else:
        body, keep_alive = await reader.read(), False  # delimited by the end of the connection
    return _Response(status_line, headers, body, chunked, keep_alive)


def _head_bytes(status_line: bytes, headers: List[Tuple[str, str]]) -> bytes:
    return status_line + b"\r\n" + b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers) + b"\r\n"


def _serialise(response: _Response) -> bytes:
    """The answer as the client gets it: headers unchanged, a chunked body as one chunk."""
    head = _head_bytes(response.status_line, response.headers)
    if not response.chunked:
        return head + response.body
    body = (b"%x\r\n" % len(response.body) + response.body + b"\r\n") if response.body else b""
    return head + body + b"0\r\n\r\n"


def _truncated(response: _Response) -> bytes:
    """The answer with a Content-Length but only half its body (an empty body claims 64 bytes)."""
    declared = len(response.body) or 64
    headers = [(k, v) for k, v in response.headers
               if k.lower() not in ("content-length", "transfer-encoding", "connection", "keep-alive")]
    headers.append(("Content-Length", str(declared)))
    return _head_bytes(response.status_line, headers) + response.body[: len(response.body) // 2]


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close abruptly: SO_LINGER 0 makes the kernel send RST instead of FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()
