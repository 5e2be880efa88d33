"""The metrics port: Prometheus metrics and a live, read-only status page, served together by
one small asyncio HTTP server on the service's event loop (no thread per viewer).

    server = await statuspage.serve("127.0.0.1:51061", service, subscribers, calls=..., store_readers=..., tokens=...)
    ...
    await server.close()
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

from batchgate.auth import Tokens
from batchgate.service import BatchService
from batchgate.statuspage.app import StatusPage
from batchgate.statuspage.http import HttpServer
from batchgate.streams import Subscribers


@dataclass
class MetricsPort:
    address: str  # host:port as bound
    _http: HttpServer
    _page: StatusPage

    async def close(self) -> None:
        await self._page.close()
        await self._http.close()


async def serve(
    listen: str, service: BatchService, subscribers: Subscribers, *, calls: Executor, store_readers: Executor, tokens: Tokens
) -> MetricsPort:
    """Serve metrics and the status page on `listen` (host:port; port 0: any free port); its
    data wants the `tokens` the gRPC API wants (none, if they want none)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    page = StatusPage(service, subscribers, calls=calls, store_readers=store_readers, tokens=tokens)
    http = HttpServer(page.handle)
    bound = await http.start(host, int(port))
    return MetricsPort(f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}", http, page)
