"""A TCP proxy that adds a fixed delay to each HTTP request, for the benchmarks (a WAN in front of Azurite).

usage: python bench/_latency_proxy.py UPSTREAM SECONDS

UPSTREAM is an ``http://host:port/path`` endpoint; the proxy listens on a
free loopback port, prints its endpoint (the same path, its own port) on one
line and runs until killed. Bytes pass through unchanged. A request is the
first bytes the client sends after the server last answered on the same
connection (clients do not pipeline HTTP/1.1 requests): those wait SECONDS
before they are forwarded, the rest of a request body does not.
"""

import asyncio
import sys
import urllib.parse

_CHUNK = 1 << 16


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: dict, latency: float,
                from_client: bool) -> None:
    """Copy one direction until EOF; a client's first bytes after an answer wait ``latency``."""
    try:
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                break
            if from_client:
                if state["answered"]:
                    state["answered"] = False
                    await asyncio.sleep(latency)
            else:
                state["answered"] = True
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        if not writer.is_closing():
            writer.close()


def serve(upstream: str, latency: float) -> None:
    """Run the proxy for ever; print its endpoint once listening."""
    parts = urllib.parse.urlsplit(upstream)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        sys.exit("upstream must be an http://host:port URL")

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(parts.hostname, parts.port)
        except OSError:
            client_writer.close()
            return
        state = {"answered": True}  # the first request of a connection waits too
        await asyncio.gather(_pump(client_reader, up_writer, state, latency, True),
                             _pump(up_reader, client_writer, state, latency, False))

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        print("http://127.0.0.1:%d%s" % (port, parts.path), flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[2])
        sys.exit(0 if len(sys.argv) == 2 else 2)
    serve(sys.argv[1], float(sys.argv[2]))
