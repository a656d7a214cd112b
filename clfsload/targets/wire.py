"""A lean HTTP/1.1 client for the blob data path: keep-alive connections, bodies in memory.

Why it exists: a small Put Blob through aiohttp costs about 0.4 ms of client
CPU, more than the loader's whole budget per object. Here one request is a
formatted head and the body handed to an asyncio transport, and the answer is
parsed as it arrives, in one :class:`asyncio.Protocol` per connection; no
task, no stream object, no header multidict.

What it does (all the data path needs):

* methods whose body is held in memory (``PUT``) or empty (``GET``,
  ``DELETE``); answers framed by ``Content-Length``, ``chunked``, or the end
  of the connection; interim ``1xx`` answers are skipped;
* keep-alive: at most ``limit`` connections, reused while the server keeps
  them open. A request that fails on a reused connection before any byte of
  its answer arrived is sent once more on a new one (the server may have
  closed the idle connection as the request went out); every method used
  here is idempotent;
* ``http`` and ``https`` (TLS, verified against certifi's CA bundle like the
  SDK's ``requests``, or the system's store);
* timeouts: ``connect_timeout`` to open a connection; then the request fails
  when, for ``read_timeout`` seconds, the socket neither took a byte of the
  body nor delivered a byte of the answer, so a server that stalls while
  reading a large body is noticed as surely as one that never answers.

What it does not do: proxies (the target uses aiohttp when one is set),
redirects, cookies, compression. Errors are :class:`WireError` (a
``ConnectionError``) for a connection that broke or an answer that cannot be
parsed, and :class:`WireTimeout` (a ``TimeoutError``): the retry layer treats
both as network errors. Messages hold the host, never the request target
(which carries the SAS).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

__all__ = ["WireError", "WirePool", "WireResponse", "WireTimeout"]

Body = Union[bytes, bytearray, memoryview]

#: Longest answer head accepted (status line and headers).
_MAX_HEAD = 64 * 1024
#: Longest chunk-size line accepted.
_MAX_CHUNK_LINE = 1024

# Parser phases of one answer.
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _TO_EOF = range(7)


class WireResponse(NamedTuple):
    """An answer: status, headers (names in lower case), whole body."""

    status: int
    headers: Dict[str, str]
    body: bytes


class WireError(ConnectionError):
    """The connection broke, or the answer is not HTTP/1.x as expected."""


class WireTimeout(TimeoutError):
    """No progress on a request for the allowed time (connect or read)."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, where: str, read_timeout: float) -> None:
        self._loop = loop
        self._where = where
        self._read_timeout = read_timeout
        self.transport: Optional[asyncio.Transport] = None
        self.closed = False
        #: the last answer allowed the connection to be used again
        self.reusable = False
        #: some byte of the current answer arrived
        self.answered = False
        self._waiter: Optional[asyncio.Future] = None
        self._buf = bytearray()
        self._phase = _HEAD
        self._no_body = False
        self._need = 0
        self._keep_alive = False
        self._status = 0
        self._headers: Dict[str, str] = {}
        self._body: List[bytes] = []
        self._received = 0
        #: the watchdog's last look at :meth:`progress`, and when it last changed
        self.mark: Tuple[int, int] = (0, 0)
        self.moved_at = 0.0

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self._close()  # bytes nobody asked for: the connection is out of step
            return
        self.answered = True
        self._received += len(data)
        self._buf += data
        try:
            self._parse()
        except WireError as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        if self._waiter is not None and not self._waiter.done() and self._phase == _TO_EOF:
            self._finish(bytes(self._buf))
        return False  # let the transport close

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.closed = True
        self.reusable = False
        if self._waiter is not None and not self._waiter.done():
            if self._phase == _TO_EOF and exc is None:
                self._finish(bytes(self._buf))
            else:
                reason = f": {exc}" if exc else ""
                self._fail(WireError(f"connection to {self._where} closed before the answer ended{reason}"))

    # -- one exchange ---------------------------------------------------------------

    async def exchange(self, head: bytes, body: Optional[Body], no_body: bool) -> WireResponse:
        """Send one request and return its answer; the connection stays open if it may be reused.

        The pool's watchdog (:meth:`WirePool._watch`) fails it if it stalls.
        """
        assert self.transport is not None
        waiter = self._loop.create_future()
        self._waiter = waiter
        self._buf.clear()
        self._phase = _HEAD
        self._no_body = no_body
        self._body = []
        self.answered = False
        self.reusable = False
        if body:
            self.transport.writelines((head, body))
        else:
            self.transport.write(head)
        self.mark = self.progress()
        self.moved_at = self._loop.time()
        try:
            return await waiter
        finally:
            self._waiter = None

    def progress(self) -> Tuple[int, int]:
        """What changes while a request moves: bytes of answer received, bytes of request not yet sent."""
        if self.transport is None:
            return (self._received, 0)
        return (self._received, self.transport.get_write_buffer_size())

    @property
    def busy(self) -> bool:
        """A request is waiting for its answer."""
        return self._waiter is not None and not self._waiter.done()

    def stalled(self) -> None:
        """Fail the request in flight: it made no progress for ``read_timeout`` seconds."""
        self._fail(WireTimeout(f"no progress from {self._where} for {self._read_timeout:g}s"))

    def _finish(self, body: bytes) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(WireResponse(self._status, self._headers, body))

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self._close()

    def _close(self) -> None:
        self.reusable = False
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Close the connection now."""
        self._close()

    # -- the answer's parser ----------------------------------------------------------

    def _parse(self) -> None:
        buf = self._buf
        while True:
            phase = self._phase
            if phase == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        raise WireError(f"answer head from {self._where} longer than {_MAX_HEAD} bytes")
                    return
                head = bytes(buf[:end])
                del buf[:end + 4]
                self._start_body(head)
                if self._phase == _HEAD:
                    continue  # an interim 1xx answer: the real one follows
                if self._phase == _LENGTH and self._need == 0:
                    self._done(b"")
                    return
            elif phase == _LENGTH:
                if len(buf) < self._need:
                    return
                if len(buf) > self._need:
                    raise WireError(f"{self._where} sent more bytes than its Content-Length")
                body = bytes(buf)
                buf.clear()
                self._done(body)
                return
            elif phase == _TO_EOF:
                return  # eof_received / connection_lost finish it
            elif phase == _CHUNK_SIZE or phase == _TRAILER:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > _MAX_CHUNK_LINE:
                        raise WireError(f"chunk line from {self._where} too long")
                    return
                line = bytes(buf[:end])
                del buf[:end + 2]
                if phase == _TRAILER:
                    if not line:
                        self._done(b"".join(self._body))
                        return
                    continue  # a trailer header: ignored
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise WireError(f"bad chunk size from {self._where}") from None
                if size < 0:
                    raise WireError(f"bad chunk size from {self._where}")
                self._need = size
                self._phase = _CHUNK_DATA if size else _TRAILER
            elif phase == _CHUNK_DATA:
                if len(buf) < self._need:
                    return
                self._body.append(bytes(buf[:self._need]))
                del buf[:self._need]
                self._phase = _CHUNK_END
            else:  # _CHUNK_END: the CRLF after a chunk's data
                if len(buf) < 2:
                    return
                if buf[:2] != b"\r\n":
                    raise WireError(f"bad chunk framing from {self._where}")
                del buf[:2]
                self._phase = _CHUNK_SIZE

    def _start_body(self, head: bytes) -> None:
        """Read the status line and headers; choose how the body is framed."""
        line_end = head.find(b"\r\n")
        status_line = head if line_end < 0 else head[:line_end]
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise WireError(f"{self._where} did not answer in HTTP/1.x")
        status = int(parts[1])
        if 100 <= status < 200:
            return  # stay in _HEAD: the real answer follows
        headers: Dict[str, str] = {}
        if line_end >= 0:
            for line in head[line_end + 2:].decode("latin-1").split("\r\n"):
                name, sep, value = line.partition(":")
                if not sep:
                    raise WireError(f"malformed header line from {self._where}")
                headers[name.lower()] = value.strip()
        self._status = status
        self._headers = headers
        keep_alive = parts[0] == b"HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if self._no_body or status in (204, 304):
            self._phase, self._need = _LENGTH, 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._phase = _CHUNK_SIZE
        elif "content-length" in headers:
            length = headers["content-length"]
            if not length.isdigit():
                raise WireError(f"bad Content-Length from {self._where}")
            self._need = int(length)
            self._phase = _LENGTH
        else:
            self._phase = _TO_EOF
            keep_alive = False
        self._keep_alive = keep_alive

    def _done(self, body: bytes) -> None:
        # Reusable only in step: nothing more was received, and the whole
        # request went out (a server may answer, say 403, before it has read
        # the body; what is left of it must not precede the next request).
        self.reusable = (self._keep_alive and not self._buf and self.transport is not None
                         and self.transport.get_write_buffer_size() == 0)
        self._phase = _HEAD
        self._finish(body)


def default_ssl_context() -> ssl.SSLContext:
    """A TLS context that verifies certificates and host names: certifi's CA bundle, else the system's.

    certifi's bundle is the one the SDK's ``requests`` trusts, so the
    workers' uploads and the driver's SDK calls accept the same servers.
    """
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


class WirePool:
    """Keep-alive connections to one ``http(s)://host:port``, at most ``limit`` at once.

    Create and use it inside one event loop; :meth:`close` it there.
    """

    def __init__(self, scheme: str, host: str, port: int, *, limit: int, connect_timeout: float,
                 read_timeout: float, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme must be http or https, not {scheme!r}")
        self._host = host
        self._port = port
        self._ssl = (ssl_context or default_ssl_context()) if scheme == "https" else None
        self._where = f"{host}:{port}"
        default_port = 443 if scheme == "https" else 80
        host_header = f"[{host}]" if ":" in host else host
        self.host_header = host_header if port == default_port else f"{host_header}:{port}"
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._slots = asyncio.Semaphore(limit)
        self._idle: List[_Connection] = []
        self._open: "set[_Connection]" = set()
        self._busy: "set[_Connection]" = set()
        self._watchdog: Optional[asyncio.TimerHandle] = None
        self._closed = False

    async def request(self, method: str, target: str, headers: str, body: Optional[Body] = None) -> WireResponse:
        """Send ``METHOD target`` with the pre-formatted *headers* (``Name: value\\r\\n`` lines) and *body*.

        Host and Content-Length are added here. Raises WireError or WireTimeout.
        """
        length = len(body) if body is not None else 0
        head = (f"{method} {target} HTTP/1.1\r\nHost: {self.host_header}\r\n{headers}"
                f"Content-Length: {length}\r\n\r\n").encode("latin-1")
        no_body = method == "HEAD"
        async with self._slots:
            conn, reused = self._take()
            if conn is None:
                conn = await self._connect()
            try:
                answer = await self._exchange(conn, head, body, no_body)
            except WireError:
                if not (reused and not conn.answered):
                    self._drop(conn)
                    raise
                # The server closed the idle connection as the request went out: once more, on a new one.
                self._drop(conn)
                conn = await self._connect()
                try:
                    answer = await self._exchange(conn, head, body, no_body)
                except BaseException:
                    self._drop(conn)
                    raise
            except BaseException:
                self._drop(conn)
                raise
            if conn.reusable and not self._closed:
                self._idle.append(conn)
            else:
                self._drop(conn)
            return answer

    async def _exchange(self, conn: _Connection, head: bytes, body: Optional[Body], no_body: bool) -> WireResponse:
        self._busy.add(conn)
        if self._watchdog is None:
            self._schedule_watchdog()
        try:
            return await conn.exchange(head, body, no_body)
        finally:
            self._busy.discard(conn)

    def _schedule_watchdog(self) -> None:
        # Four looks per timeout: a stall is noticed within 1.25 x read_timeout.
        self._watchdog = asyncio.get_running_loop().call_later(max(self._read_timeout / 4, 0.01), self._watch)

    def _watch(self) -> None:
        """Timer, while requests are in flight: fail those that made no progress for ``read_timeout``.

        One timer for the pool instead of one per request: a request costs
        only a set insertion and removal.
        """
        self._watchdog = None
        now = asyncio.get_running_loop().time()
        for conn in list(self._busy):
            if not conn.busy:
                continue
            mark = conn.progress()
            if mark != conn.mark:
                conn.mark = mark
                conn.moved_at = now
            elif now - conn.moved_at >= self._read_timeout:
                conn.stalled()
        if self._busy and not self._closed:
            self._schedule_watchdog()

    def _take(self) -> Tuple[Optional[_Connection], bool]:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn, True
            self._open.discard(conn)
        return None, False

    async def _connect(self) -> _Connection:
        if self._closed:
            raise WireError(f"connection pool to {self._where} is closed")
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(loop, self._where, self._read_timeout),
                                       self._host, self._port, ssl=self._ssl),
                self._connect_timeout,
            )
        except asyncio.TimeoutError:
            raise WireTimeout(f"cannot connect to {self._where} within {self._connect_timeout:g}s") from None
        self._open.add(conn)
        return conn

    def _drop(self, conn: _Connection) -> None:
        conn.close()
        self._open.discard(conn)

    async def close(self) -> None:
        """Close every connection."""
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their connection_lost
