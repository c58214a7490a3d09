"""What the vendor-compatible test servers share: a loopback server, JSON answers, drops."""

from __future__ import annotations

import contextlib
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlparse

import msgspec

Server = TypeVar("Server", bound="LoopbackServer")


class JsonReplies:
    """Mixed in before BaseHTTPRequestHandler: HTTP/1.1 keep-alive, JSON answers (counted by
    `answered`), dropped connections."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, a client's delayed ACK holds the
    # body back 40 ms. Off by default, so the Mixpanel server behaves as it was measured.
    no_delay = False

    def setup(self) -> None:
        super().setup()  # type: ignore[misc]
        if self.no_delay:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # what the vendor's API answers with a 404
    not_found_body: ClassVar[dict[str, str]] = {"error": "not found"}

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        """GET /stats: what the server counted (its `state.stats()`); any other GET is a 404."""
        if urlparse(self.path).path == "/stats":  # type: ignore[attr-defined]
            self._reply(200, self.server.state.stats())  # type: ignore[attr-defined]
            return
        self._reply(404, self.not_found_body)

    def answered(self, status: int) -> None:
        """Called after each answer (the servers count statuses)."""

    def _reply(self, status: int, body: Any, headers: dict | None = None) -> None:
        data = msgspec.json.encode(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        self.answered(status)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class LoopbackServer(ThreadingHTTPServer):
    """A threaded server on 127.0.0.1 (a free port by default), started in the background."""

    daemon_threads = True

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler],
                 tls: ssl.SSLContext | None = None):
        super().__init__(("127.0.0.1", port), handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client killed mid-request (the fault campaign does it) is not worth a traceback."""
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)

    def start(self: Server) -> Server:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
