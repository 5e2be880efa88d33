"""HTTP plumbing the fake master and its agents share: a server that keeps quiet about clients
hanging up, a handler that passes each request on, HTTP basic authentication, and replies."""

from __future__ import annotations

import base64
import contextlib
import socket
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Serve = Callable[[BaseHTTPRequestHandler, bytes], None]


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client hanging up (a restart, a test's kill -9) is no error here

    def process_request(self, request: Any, client_address: Any) -> None:
        self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Hang up on every client too (kept-alive connections outlive shutdown() otherwise)."""
        for connection in list(self._connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def handler_class(method: str, serve: Serve) -> type[BaseHTTPRequestHandler]:
    """A handler of `method` requests that calls `serve(handler, body)`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without this, the body waits for the client's
        # delayed ACK of the headers (40 ms a reply), which no real Mesos process makes it wait.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            pass

        def handle_request(self) -> None:
            serve(self, self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    setattr(Handler, f"do_{method}", Handler.handle_request)
    return Handler


def authorized(handler: BaseHTTPRequestHandler, credentials: tuple[str, str] | None) -> bool:
    if credentials is None:
        return True
    expected = "Basic " + base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
    return handler.headers.get("Authorization") == expected


def reply(handler: BaseHTTPRequestHandler, code: int, body: str | bytes, headers: dict[str, str] | None = None) -> None:
    data = body.encode() if isinstance(body, str) else body
    handler.send_response(code)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
