"""The sink's own figure: a bare client that Put Blobs of 4 KiB with a SAS, as fast as the sink answers.

``measure(sink)`` starts ``clients`` processes of this module, each with
``connections`` keep-alive connections sending one request at a time (no
pipelining), each request a valid Put Blob (``x-ms-blob-type``, a container
SAS) of a 4 KiB body under a name of its own (cycling through 1,000 per
connection, so memory stays flat). They all start and stop at the same wall
clock times; the sink's CPU is read from ``/proc`` at both, so the result is
puts per second of wall time and puts per second of one sink core
(= puts / sink CPU seconds), which is the figure that must be at least
10,000: the sink is one thread on one event loop and cannot use more than one core.

``python -m bench.blobsink.loadgen ENDPOINT CONTAINER SAS START END CONNECTIONS`` is one client
process; it prints ``puts errors``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.parse
from typing import List

_BODY = bytes(range(256)) * 16  # 4 KiB


class _Client(asyncio.Protocol):
    """One connection: a Put Blob, wait for the whole answer head, the next one."""

    def __init__(self, gen: "_Gen", index: int) -> None:
        self.gen = gen
        self.index = index
        self.sent = 0
        self.buf = b""
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        if time.time() >= self.gen.end:
            self.transport.close()
            self.gen.finished()
            return
        self.sent += 1
        self.transport.writelines((self.gen.head % (self.index, self.sent % 1000), _BODY))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head, self.buf = self.buf[:end], self.buf[end + 4:]
        length = 0
        marker = head.lower().find(b"content-length:")
        if marker >= 0:
            length = int(head[marker + 15:].split(b"\r\n", 1)[0])
        if len(self.buf) < length:  # an error body: read it whole first (rare)
            self.buf = head + b"\r\n\r\n" + self.buf
            return
        self.buf = self.buf[length:]
        if time.time() >= self.gen.start:
            if head.startswith(b"HTTP/1.1 201"):
                self.gen.puts += 1
            else:
                self.gen.errors += 1
        self.send()

    def connection_lost(self, exc: object) -> None:
        self.gen.finished()


class _Gen:
    def __init__(self, endpoint: str, container: str, sas: str, start: float, end: float) -> None:
        parts = urllib.parse.urlsplit(endpoint)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.head = ("PUT %s/%s/lg%%d-%%d?%s HTTP/1.1\r\nHost: %s:%d\r\nx-ms-blob-type: BlockBlob\r\n"
                     "x-ms-version: 2025-01-05\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: %d\r\n\r\n" % (parts.path, container, sas.replace("%", "%%"), self.host,
                                                     self.port, len(_BODY))).encode("latin-1")
        self.start, self.end = start, end
        self.puts = self.errors = 0
        self.open = 0
        self.done: asyncio.Future

    def finished(self) -> None:
        self.open -= 1
        if self.open <= 0 and not self.done.done():
            self.done.set_result(None)


async def _run(gen: _Gen, connections: int) -> None:
    loop = asyncio.get_running_loop()
    gen.done = loop.create_future()
    gen.open = connections * 2  # connection_lost and the last send() both report
    for index in range(connections):
        await loop.create_connection(lambda i=index: _Client(gen, i), gen.host, gen.port)
    await asyncio.wait_for(gen.done, gen.end - time.time() + 30)


def client_main(argv: List[str]) -> None:
    """One load generator process (see the module docstring)."""
    endpoint, container, sas, start, end, connections = argv
    gen = _Gen(endpoint, container, sas, float(start), float(end))
    try:
        import uvloop
        uvloop.run(_run(gen, int(connections)))
    except ImportError:
        asyncio.run(_run(gen, int(connections)))
    print(gen.puts, gen.errors, flush=True)


def measure(sink, seconds: float = 3.0, connections: int = 64, clients: int = 1) -> List[str]:  # noqa: ANN001
    """Run the bare client against *sink* (a :class:`~bench.blobsink.BlobSink`); lines to print."""
    container = sink.create_container()
    sas = sink.make_sas(container)
    start = time.time() + 1.5  # time to start the clients and open their connections (a warm-up)
    end = start + seconds
    procs = [subprocess.Popen([sys.executable, "-m", "bench.blobsink.loadgen", sink.endpoint, container, sas,
                               repr(start), repr(end), str(connections)], stdout=subprocess.PIPE, text=True)
             for _ in range(clients)]
    time.sleep(max(0.0, start - time.time()))
    cpu0 = sink.cpu_seconds()
    time.sleep(max(0.0, end - time.time()))
    cpu1 = sink.cpu_seconds()
    puts = errors = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        p, e = out.split()
        puts, errors = puts + int(p), errors + int(e)
    cpu = cpu1 - cpu0
    lines = ["blob sink self-test: %d clients x %d connections, 4 KiB Put Blob with a SAS, delay %.0f ms, %.1f s"
             % (clients, connections, 1000 * sink.delay, seconds),
             "  %d puts (%d errors): %.0f puts/s wall; sink CPU %.2f s = %.1f us per put = %.0f puts/s per sink core"
             % (puts, errors, puts / seconds, cpu, 1e6 * cpu / max(puts, 1), puts / cpu if cpu else float("inf"))]
    return lines


if __name__ == "__main__":
    client_main(sys.argv[1:])
