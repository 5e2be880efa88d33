"""A small HTTP/1.1 server on asyncio streams, for the metrics port: GET and HEAD only, one
request per connection (Connection: close), bodies whole or streamed (server-sent events).

Why not http.server: it holds a thread per open connection, and a status page's event stream
stays open as long as someone looks at it. Here an open stream is a coroutine, as a gRPC
GetUpdatedJob stream is (batchgate/streams.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024  # request line and headers: a GET needs little
READ_TIMEOUT_SECONDS = 10.0  # to send the request's head; a silent connection is closed


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # decoded, without the query
    query: dict[str, str]  # the first value of each parameter
    headers: dict[str, str]  # names in lower case
    peer: str


@dataclass
class Response:
    status: HTTPStatus = HTTPStatus.OK
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    # A body sent as it is produced (no Content-Length), e.g. server-sent events; the connection
    # ends when the iterator does, or when the client goes away.
    stream: AsyncGenerator[bytes, None] | None = None


def text(status: HTTPStatus, message: str) -> Response:
    return Response(status, (message + "\n").encode())


Handler = Callable[[Request], Awaitable[Response]]

# Headers on every answer: the page is read-only and same-origin; nothing may frame it or sniff
# its types, and it loads nothing from elsewhere.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
}


class HttpServer:
    """Serves `handler` on one address until closed."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen; return the bound port (port 0: any free one)."""
        self._server = await asyncio.start_server(self._serve_connection, host, port, limit=MAX_HEAD_BYTES)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for connection in list(self._connections):  # open event streams would never end on their own
            connection.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            peer = writer.get_extra_info("peername")
            request = await asyncio.wait_for(_read_request(reader, f"{peer[0]}:{peer[1]}" if peer else ""), READ_TIMEOUT_SECONDS)
            if isinstance(request, Response):
                response = request
            else:
                try:
                    response = await self._handler(request)
                except Exception:
                    log.exception("the status page failed to answer %s", request.path)
                    response = text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (see the service's log)")
            await _send(writer, response, head_only=not isinstance(request, Response) and request.method == "HEAD")
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # the client went away or spoke nonsense: nothing to answer
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _read_request(reader: asyncio.StreamReader, peer: str) -> Request | Response:
    head = await reader.readuntil(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return text(HTTPStatus.BAD_REQUEST, "not an HTTP/1.x request")
    method, target, _version = parts
    if method not in ("GET", "HEAD"):
        response = text(HTTPStatus.METHOD_NOT_ALLOWED, "this page is read-only: GET and HEAD only")
        response.headers["Allow"] = "GET, HEAD"
        return response
    headers: dict[str, str] = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    url = urllib.parse.urlsplit(target)
    query = {name: values[0] for name, values in urllib.parse.parse_qs(url.query).items()}
    return Request(method, urllib.parse.unquote(url.path), query, headers, peer)


async def _send(writer: asyncio.StreamWriter, response: Response, *, head_only: bool) -> None:
    headers = {**SECURITY_HEADERS, "Content-Type": response.content_type, "Connection": "close", **response.headers}
    if response.stream is None:
        headers["Content-Length"] = str(len(response.body))
    head = f"HTTP/1.1 {response.status.value} {response.status.phrase}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    writer.write(head.encode("latin-1"))
    if head_only:
        await writer.drain()
        return
    if response.stream is None:
        writer.write(response.body)
        await writer.drain()
        return
    try:
        async for chunk in response.stream:
            writer.write(chunk)
            await writer.drain()  # waits while the client reads slowly: we hold one chunk, no queue
    finally:
        await response.stream.aclose()
