"""The lean HTTP/1.1 client of the blob data path (clfsload.targets.wire), against scripted servers.

Each test runs a small asyncio server on 127.0.0.1 whose handler reads one
request at a time and answers as the test says: framings (Content-Length,
chunked, to the end of the connection), interim answers, keep-alive and
its races, broken connections, stalls, malformed answers.
"""

import asyncio
from typing import Awaitable, Callable, List, Tuple

import pytest

from clfsload.targets.wire import WireError, WirePool, WireTimeout

Request = Tuple[bytes, dict, bytes]  # request line, headers (lower-case names), body
Handler = Callable[[Request, asyncio.StreamWriter, int], Awaitable[bool]]  # returns False to close


async def _read_request(reader: asyncio.StreamReader) -> Request:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return lines[0], headers, body


class Server:
    """Runs ``handler`` for every request; counts connections; records requests."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self.connections = 0
        self.requests: List[Request] = []
        self.port = 0

    async def __aenter__(self) -> "Server":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()

    async def _serve(self, reader, writer) -> None:
        self.connections += 1
        number = 0
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests.append(request)
                number += 1
                if not await self.handler(request, writer, number):
                    return
                await writer.drain()
        finally:
            writer.close()

    def pool(self, **kw) -> WirePool:
        kw.setdefault("limit", 4)
        kw.setdefault("connect_timeout", 5)
        kw.setdefault("read_timeout", 5)
        return WirePool("http", "127.0.0.1", self.port, **kw)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def answer(status: int, body: bytes = b"", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


async def ok(request, writer, number) -> bool:
    writer.write(answer(201, b"", "x-ms-request-id: %d\r\n" % number))
    return True


def test_put_sends_head_and_body_and_reuses_the_connection():
    async def main():
        async with Server(ok) as server:
            pool = server.pool()
            for i in range(5):
                got = await pool.request("PUT", "/acct/c/blob%d?sig=x" % i, "x-ms-blob-type: BlockBlob\r\n", b"data%d" % i)
                assert got.status == 201
                assert got.headers["x-ms-request-id"] == str(i + 1)
                assert got.body == b""
            await pool.close()
            return server

    server = run(main())
    assert server.connections == 1
    line, headers, body = server.requests[2]
    assert line == b"PUT /acct/c/blob2?sig=x HTTP/1.1"
    assert headers["host"] == "127.0.0.1:%d" % server.port
    assert headers["x-ms-blob-type"] == "BlockBlob"
    assert headers["content-length"] == "5" and body == b"data2"


def test_bodies_framed_by_length_chunks_and_end_of_connection():
    payload = bytes(range(256)) * 700

    async def handler(request, writer, number):
        kind = request[0].split()[1]
        if kind == b"/length":
            writer.write(answer(200, payload))
            return True
        if kind == b"/chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for start in range(0, len(payload), 70000):
                piece = payload[start:start + 70000]
                writer.write(b"%x;ext=1\r\n" % len(piece) + piece + b"\r\n")
                await writer.drain()
            writer.write(b"0\r\nTrailer: x\r\n\r\n")
            return True
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n" + payload)  # no framing: the body ends with the connection
        return False

    async def main():
        async with Server(handler) as server:
            pool = server.pool()
            bodies = [(await pool.request("GET", path, "")).body for path in ("/length", "/chunked", "/eof", "/length")]
            await pool.close()
            return server, bodies

    server, bodies = run(main())
    assert bodies == [payload] * 4
    assert server.connections == 2  # the read-to-end answer cannot leave its connection reusable


def test_interim_answers_are_skipped_and_status_errors_come_back_with_their_headers():
    async def handler(request, writer, number):
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(answer(409, b"<Error><Code>BlobExists</Code></Error>", "x-ms-error-code: BlobExists\r\n"))
        return True

    async def main():
        async with Server(handler) as server:
            pool = server.pool()
            got = await pool.request("PUT", "/c/b", "", b"x")
            await pool.close()
            return got

    got = run(main())
    assert got.status == 409
    assert got.headers["x-ms-error-code"] == "BlobExists"
    assert b"BlobExists" in got.body


def test_connection_close_is_honoured_and_a_stale_idle_connection_is_replaced():
    async def handler(request, writer, number):
        if request[0].split()[1] == b"/close":
            writer.write(answer(200, b"bye", "Connection: close\r\n"))
            return False
        writer.write(answer(200, b"hi"))
        return False  # closes the connection without saying so: the next request finds it dead

    async def main():
        async with Server(handler) as server:
            pool = server.pool(limit=1)
            first = await pool.request("GET", "/close", "")
            second = await pool.request("GET", "/quiet", "")
            await asyncio.sleep(0.05)  # the server's close reaches the client
            third = await pool.request("GET", "/quiet", "")
            fourth = await pool.request("GET", "/quiet", "")
            await pool.close()
            return server, [first.body, second.body, third.body, fourth.body]

    server, bodies = run(main())
    assert bodies == [b"bye", b"hi", b"hi", b"hi"]
    assert server.connections >= 4


def test_a_reused_connection_dropped_under_a_request_is_retried_once_on_a_new_one():
    async def handler(request, writer, number):
        if number == 2:
            return False  # read the request, then hang up without an answer
        writer.write(answer(201))
        return True

    async def main():
        async with Server(handler) as server:
            pool = server.pool(limit=1)
            await pool.request("PUT", "/c/a", "", b"1")
            got = await pool.request("PUT", "/c/b", "", b"2")
            await pool.close()
            return server, got

    server, got = run(main())
    assert got.status == 201
    assert [r[0].split()[1] for r in server.requests] == [b"/c/a", b"/c/b", b"/c/b"]


def test_a_fresh_connection_dropped_under_a_request_is_an_error():
    async def handler(request, writer, number):
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 10\r\n\r\nabc")
        return False  # the answer breaks off

    async def main():
        async with Server(handler) as server:
            pool = server.pool()
            try:
                with pytest.raises(WireError, match="closed before the answer ended"):
                    await pool.request("PUT", "/c/a?sig=SECRET", "", b"1")
            finally:
                await pool.close()
            return server

    server = run(main())
    assert len(server.requests) == 1  # not resent: the connection was new


@pytest.mark.parametrize("reply, match", [
    (b"SSH-2.0-OpenSSH\r\n\r\n", "did not answer in HTTP/1.x"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000, "longer than"),
])
def test_malformed_answers_are_wire_errors(reply, match):
    async def handler(request, writer, number):
        writer.write(reply)
        await writer.drain()
        await asyncio.sleep(1)
        return False

    async def main():
        async with Server(handler) as server:
            pool = server.pool()
            try:
                with pytest.raises(WireError, match=match):
                    await pool.request("GET", "/c/a", "")
            finally:
                await pool.close()

    run(main())


def test_a_server_that_never_answers_times_out():
    async def handler(request, writer, number):
        await asyncio.sleep(5)
        return False

    async def main():
        async with Server(handler) as server:
            pool = server.pool(read_timeout=0.3)
            try:
                with pytest.raises(WireTimeout, match="no progress from 127.0.0.1"):
                    await pool.request("PUT", "/c/a?sig=SECRET", "", b"1")
            finally:
                await pool.close()

    run(main())


def test_a_server_that_stops_reading_a_large_body_times_out_but_a_slow_one_does_not():
    body = b"z" * (32 << 20)  # far more than the socket buffers hold

    async def stalled(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(1 << 20)
        await asyncio.sleep(5)  # stop reading
        writer.close()

    async def slow(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while length:
            got = await reader.read(min(length, 4 << 20))
            length -= len(got)
            await asyncio.sleep(0.02)  # slow, but always moving: never a stall
        writer.write(answer(201))
        await writer.drain()
        writer.close()

    async def attempt(serve, timeout):
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = WirePool("http", "127.0.0.1", port, limit=1, connect_timeout=5, read_timeout=timeout)
        try:
            return await pool.request("PUT", "/c/big", "", body)
        finally:
            await pool.close()
            server.close()

    async def main():
        with pytest.raises(WireTimeout):
            await attempt(stalled, 0.5)
        return await attempt(slow, 0.5)

    assert run(main()).status == 201


def test_the_pool_never_opens_more_connections_than_its_limit():
    active = 0
    peak = 0

    async def handler(request, writer, number):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1
        writer.write(answer(201))
        return True

    async def main():
        async with Server(handler) as server:
            pool = server.pool(limit=3)
            results = await asyncio.gather(*(pool.request("PUT", "/c/%d" % i, "", b"x") for i in range(30)))
            await pool.close()
            return server, results

    server, results = run(main())
    assert all(r.status == 201 for r in results)
    assert server.connections == 3
    assert peak == 3


def test_refused_connections_and_closed_pools_are_errors_that_name_only_the_host():
    async def main():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        pool = WirePool("http", "127.0.0.1", port, limit=1, connect_timeout=2, read_timeout=2)
        with pytest.raises(ConnectionError):
            await pool.request("GET", "/c/a?sig=SECRET", "")
        await pool.close()
        with pytest.raises(WireError, match="is closed") as caught:
            await pool.request("GET", "/c/a?sig=SECRET", "")
        assert "SECRET" not in str(caught.value)

    run(main())
    with pytest.raises(ValueError):
        WirePool("ftp", "h", 21, limit=1, connect_timeout=1, read_timeout=1)


def test_host_header_leaves_out_the_default_port_and_brackets_ipv6():
    assert WirePool("https", "acct.blob.core.windows.net", 443, limit=1, connect_timeout=1,
                    read_timeout=1).host_header == "acct.blob.core.windows.net"
    assert WirePool("http", "::1", 10000, limit=1, connect_timeout=1, read_timeout=1).host_header == "[::1]:10000"


def test_an_answer_that_comes_before_the_body_is_sent_does_not_reuse_the_connection():
    body = b"q" * (16 << 20)  # more than the socket buffers take at once

    async def early(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer(403, b"denied", "x-ms-error-code: AuthorizationFailure\r\n"))
        await writer.drain()
        await asyncio.sleep(0.5)  # the client's body is still on its way, unread
        writer.close()

    async def main():
        server = await asyncio.start_server(early, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = WirePool("http", "127.0.0.1", port, limit=1, connect_timeout=5, read_timeout=5)
        try:
            got = await pool.request("PUT", "/c/big", "", body)
            return got, len(pool._idle)
        finally:
            await pool.close()
            server.close()

    got, idle = run(main())
    assert got.status == 403 and got.headers["x-ms-error-code"] == "AuthorizationFailure"
    assert idle == 0


def _self_signed(tmp_path):
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


def test_https_verifies_the_server_certificate(tmp_path):
    import ssl

    cert_file, key_file = _self_signed(tmp_path)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert_file, key_file)

    async def serve(reader, writer):
        try:
            await _read_request(reader)
            writer.write(answer(201, b"", "Connection: close\r\n"))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def attempt(client_context):
        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_side)
        port = server.sockets[0].getsockname()[1]
        pool = WirePool("https", "127.0.0.1", port, limit=1, connect_timeout=5, read_timeout=5,
                        ssl_context=client_context)
        try:
            return await pool.request("PUT", "/c/b?sig=x", "", b"payload")
        finally:
            await pool.close()
            server.close()

    async def main():
        with pytest.raises(ssl.SSLCertVerificationError):
            await attempt(None)  # the default trust store does not know this certificate
        trusting = ssl.create_default_context(cafile=cert_file)
        return await attempt(trusting)

    assert run(main()).status == 201
