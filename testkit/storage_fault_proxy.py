"""An HTTP proxy in front of an S3-compatible server that injects the faults S3 has on a bad day.

Each request is forwarded to the upstream server unless a seeded draw picks a fault for it:

- ``slowdown``: 503 with S3's SlowDown error body, as S3 answers when throttling a prefix;
- ``drop``: the connection is closed before any answer;
- ``cut``: the upstream answer is sent with its headers and only part of its body, then the
  connection is closed (a transfer dropped midway);
- ``slow``: the answer is held back for a while first.

With ``tls`` (an ``ssl.SSLContext``) the proxy serves HTTPS, to test certificate checks.
"""

from __future__ import annotations

import http.client
import random
import ssl
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

SLOWDOWN_BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                 b"<Message>Please reduce your request rate.</Message></Error>")
# Hop-by-hop headers are not forwarded (RFC 9110, 7.6.1).
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-connection"}


class StorageFaultProxy:
    """A fault-injecting proxy; ``rates`` maps a fault name to its probability per request."""

    def __init__(self, upstream: str, rates: dict[str, float] | None = None, seed: int = 0,
                 slow_seconds: float = 0.5, tls: ssl.SSLContext | None = None):
        self.upstream = urlsplit(upstream)
        self.rates = dict(rates or {})
        self.slow_seconds = slow_seconds
        self.faults: Counter[str] = Counter()   # faults injected, by name
        self.requests = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> StorageFaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def draw(self) -> str | None:
        """The fault for the next request, or None."""
        with self._lock:
            self.requests += 1
            roll = self._rng.random()
            for fault, rate in self.rates.items():
                if roll < rate:
                    self.faults[fault] += 1
                    return fault
                roll -= rate
        return None

    def forward(self, method: str, path: str, headers: dict[str, str],
                body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(self.upstream.hostname or "127.0.0.1",
                                                self.upstream.port, timeout=60)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            connection.close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections the proxy itself cut end in errors: not worth a traceback."""


def _handler_for(proxy: StorageFaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fault = proxy.draw()
            if fault == "drop":
                self.close_connection = True
                self.connection.close()
                return
            if fault == "slowdown":
                self._answer(503, [("Content-Type", "application/xml")], SLOWDOWN_BODY)
                return
            if fault == "slow":
                threading.Event().wait(proxy.slow_seconds)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            status, answer_headers, data = proxy.forward(self.command, self.path, headers, body)
            if fault == "cut" and len(data) > 1 and self.command == "GET":
                self._answer(status, answer_headers, data, cut_at=len(data) // 2)
                return
            self._answer(status, answer_headers, data)

        def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes,
                    cut_at: int | None = None) -> None:
            self.send_response(status)
            for key, value in headers:
                if key.lower() not in HOP_HEADERS | {"content-length", "server", "date"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data if cut_at is None else data[:cut_at])
            if cut_at is not None:
                self.wfile.flush()
                self.close_connection = True
                self.connection.close()

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any  # noqa: N815 - the base's names

    return Handler
