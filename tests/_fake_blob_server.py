"""A scripted stand-in for a blob endpoint, to test retries without Azurite.

Each request takes the next action from ``script``; when the script is empty
the request succeeds (PUT 201, DELETE 202, else 200). Actions:

* ``("status", code, headers)``: answer *code* with *headers* and an Azure
  style XML error body whose code is the ``x-ms-error-code`` header;
* ``("reset",)``: read the request, then reset the TCP connection (RST).

``requests`` records ``(method, path)`` of every request that arrived.
"""

from __future__ import annotations

import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List, Optional, Tuple

Action = Tuple


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "FakeBlobServer"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with self.server.lock:
            self.server.requests.append((self.command, self.path))
            action = self.server.script.pop(0) if self.server.script else ("ok",)
        if action[0] == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if action[0] == "status":
            status, headers = action[1], dict(action[2])
            code = headers.get("x-ms-error-code", "")
            body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
                    f"<Message>scripted failure\nRequestId:0</Message></Error>").encode()
            headers.setdefault("Content-Type", "application/xml")
        else:
            status = {"PUT": 201, "DELETE": 202}.get(self.command, 200)
            headers = {"ETag": '"0x8DCAFE"', "Last-Modified": "Wed, 25 Nov 2026 00:00:00 GMT",
                       "x-ms-request-server-encrypted": "true"}
            body = b""
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_GET = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        return

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass


class FakeBlobServer(ThreadingHTTPServer):
    """The scripted server on 127.0.0.1 with a free port, served by a daemon thread."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.script: List[Action] = []
        self.requests: List[Tuple[str, str]] = []
        self._thread: Optional[threading.Thread] = None

    @property
    def endpoint(self) -> str:
        """A path-style endpoint URL, like Azurite's."""
        return f"http://127.0.0.1:{self.server_address[1]}/devstoreaccount1"

    def start(self) -> "FakeBlobServer":
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="fake-blob", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()

    def handle_error(self, request: object, client_address: object) -> None:
        return  # resets and client disconnects are expected here

    def load(self, *actions: Action) -> None:
        """Replace the script and forget earlier requests."""
        with self.lock:
            self.script = list(actions)
            self.requests = []
