"""``python -m bench.blobsink``: serve (print the URL, account and key as one JSON line), or ``--selftest``."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import sys


def serve(args: argparse.Namespace) -> None:
    """Run the sink for ever (until SIGTERM/SIGINT)."""
    from .auth import parse_key
    from .server import Connection, Sink

    try:
        import uvloop
    except ImportError:
        uvloop = None
    key_text = os.environ.get("BLOBSINK_KEY") or base64.b64encode(os.urandom(64)).decode()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sink = Sink(args.account, parse_key(key_text), delay=args.delay_ms / 1000.0,
                    bandwidth=args.mbps * 1e6 / 8, keep_data=not args.no_data)
        server = await loop.create_server(lambda: Connection(sink, loop), args.host, args.port, backlog=4096)
        port = server.sockets[0].getsockname()[1]
        url = "http://%s:%d" % (args.host, port)
        sink.endpoint = "%s/%s/" % (url, args.account)
        print(json.dumps({"url": url, "endpoint": "%s/%s" % (url, args.account), "account": args.account,
                          "key": key_text, "pid": os.getpid()}), flush=True)
        stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        await stop
        server.close()

    if uvloop is not None:
        uvloop.run(main())
    else:
        asyncio.run(main())


def selftest(args: argparse.Namespace) -> None:
    """Start a sink and measure it with the bare client."""
    from . import BlobSink, selftest_rows

    with BlobSink(args.delay_ms / 1000.0, account=args.account) as sink:
        for line in selftest_rows(sink, seconds=args.seconds, connections=args.connections, clients=args.clients):
            print(line, flush=True)


def main(argv=None) -> None:
    """Parse the command line and serve or self-test."""
    parser = argparse.ArgumentParser(prog="python -m bench.blobsink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="hold every answer this long (a WAN round trip)")
    parser.add_argument("--mbps", type=float, default=0.0, help="cap request + answer bodies (megabit/s; 0: none)")
    parser.add_argument("--account", default="sinkaccount")
    parser.add_argument("--no-data", action="store_true", help="keep only blob lengths (reads fail)")
    parser.add_argument("--selftest", action="store_true", help="measure a fresh sink's Put Blob rate and exit")
    parser.add_argument("--seconds", type=float, default=3.0, help="--selftest: how long")
    parser.add_argument("--connections", type=int, default=64, help="--selftest: connections per client process")
    parser.add_argument("--clients", type=int, default=1, help="--selftest: load generator processes")
    args = parser.parse_args(argv)
    if args.selftest:
        selftest(args)
    else:
        try:
            serve(args)
        except KeyboardInterrupt:
            sys.exit(130)


if __name__ == "__main__":
    main()
