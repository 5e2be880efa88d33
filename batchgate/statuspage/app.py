"""What the metrics port serves: Prometheus metrics, the status page, the JSON it reads, and its
live feed of updates (server-sent events).

    /metrics             Prometheus exposition (text or OpenMetrics, gzip when asked)
    /                    the status page: backends, live jobs, latest updates arriving live
    /jobs/ID             one job's page: spec, timeline, scheduler id
    /api/overview        JSON: the service, its backends (health, capabilities), live job counts
    /api/updates?limit=  JSON: the newest updates, newest first
    /api/jobs/ID         JSON: one job
    /events?after=SEQ    server-sent events: `overview` when it changes, `updates` (a JSON list)
                         for the updates after SEQ (without it: from now on) as they are
                         published; its id is its last update's sequence, so a reconnecting
                         browser resumes where it was
    /static/NAME         the page's CSS and JavaScript (shipped in the package, no build step)

Everything is read-only. A service with a tokens file (--tokens-file) asks the page's data for
the same bearer tokens as its gRPC API, and shows each tenant only the job sets it may see (as
ListIssuedJobs would): /api/* and /events want `Authorization: Bearer TOKEN` or the cookie the
page sets when a person types their token. The page's own files carry no data and are served to
anyone, and so is /metrics: its series name no job, job set or command, and Prometheus scrapes
it without a token.
"""

from __future__ import annotations

import asyncio
import collections
import gzip
import json
import logging
import re
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator
from concurrent.futures import Executor
from http import HTTPStatus
from importlib import resources

import prometheus_client
from prometheus_client import exposition

from batchgate.auth import ANYONE, METADATA_KEY, Tenant, Tokens
from batchgate.errors import Unauthenticated
from batchgate.service import BatchService
from batchgate.statuspage import views
from batchgate.statuspage.http import Request, Response, text
from batchgate.streams import Subscribers
from batchgate.v1 import batchgate_pb2 as pb

log = logging.getLogger(__name__)

STATIC_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
MAX_LATEST_UPDATES = 500
MAX_VIEWERS = 256  # open event streams; past it, 503 (each is cheap, but not free)
EVENT_KEEPALIVE_SECONDS = 15.0  # a comment line, so proxies keep the stream and dead viewers are found
OVERVIEW_INTERVAL_SECONDS = 1.0  # how often counts and health are looked at while someone watches
EVENT_INTERVAL_SECONDS = 0.2  # the least time between two `updates` events to one viewer
JOB_PATH = re.compile(r"/(?:api/)?jobs/(\d{1,18})")
TOKEN_COOKIE = "batchgate_token"  # set by the page's own script when a person gives their token
# A tenant who may not see every job set gets the newest updates of its own among this many.
TENANT_UPDATES_SCANNED = 5000


class StatusPage:
    def __init__(
        self, service: BatchService, subscribers: Subscribers, *, calls: Executor, store_readers: Executor, tokens: Tokens
    ) -> None:
        self._service = service
        self._subscribers = subscribers
        self._calls = calls
        self._store_readers = store_readers
        self._tokens = tokens
        self._files = _static_files()
        self._viewers = 0
        self._overview = OverviewFeed(service, calls)
        self._rendered = RenderedUpdates()

    def tenant(self, request: Request) -> Tenant | Response:
        """Who asks (by the token of the Authorization header or the page's cookie), or the
        answer that refuses them: 401, which the page meets by asking for a token."""
        if not self._tokens.required:
            return ANYONE
        presented = request.headers.get("authorization") or _bearer_cookie(request.headers.get("cookie", ""))
        try:
            return self._tokens.authenticate([(METADATA_KEY, presented)] if presented else [])
        except Unauthenticated as error:
            refusal = _json({"error": error.message, "token_wanted": True}, HTTPStatus.UNAUTHORIZED)
            refusal.headers["WWW-Authenticate"] = 'Bearer realm="batchgate"'
            return refusal

    async def handle(self, request: Request) -> Response:
        path = request.path
        if path == "/metrics":
            return await self._metrics(request)
        if path in ("/", "/index.html"):
            return self._file("index.html")
        if path.startswith("/static/"):
            return self._file(path.removeprefix("/static/"))
        job = JOB_PATH.fullmatch(path)
        if job is not None and not path.startswith("/api/"):
            return self._file("job.html")  # the page fetches the job's JSON itself
        tenant = self.tenant(request)  # past here, everything is data
        if isinstance(tenant, Response):
            return tenant
        if path == "/events":
            return self._events(request, tenant)
        if path == "/api/overview":
            return _json(views.overview_for(await self._overview.current(), tenant))
        if path == "/api/updates":
            return await self._latest_updates(request, tenant)
        if job is not None:
            return await self._job(int(job.group(1)), tenant)
        return text(HTTPStatus.NOT_FOUND, f"nothing at {path}: see / for the status page, /metrics for metrics")

    async def close(self) -> None:
        self._overview.close()

    # ---- pages and JSON ----------------------------------------------------------------------

    def _file(self, name: str) -> Response:
        found = self._files.get(name)
        if found is None:
            return text(HTTPStatus.NOT_FOUND, f"no file {name!r}")
        body, content_type = found
        return Response(body=body, content_type=content_type, headers={"Cache-Control": "no-cache"})

    async def _metrics(self, request: Request) -> Response:
        encoder, content_type = exposition.choose_encoder(request.headers.get("accept", ""))
        compress = "gzip" in request.headers.get("accept-encoding", "")

        def exposition_body() -> bytes:
            body: bytes = encoder(prometheus_client.REGISTRY)
            return gzip.compress(body, compresslevel=1) if compress else body

        # Off the event loop: some gauges ask the service and its driver when scraped.
        body = await asyncio.get_running_loop().run_in_executor(self._calls, exposition_body)
        return Response(body=body, content_type=content_type, headers={"Content-Encoding": "gzip"} if compress else {})

    async def _latest_updates(self, request: Request, tenant: Tenant) -> Response:
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            return text(HTTPStatus.BAD_REQUEST, "limit: not a whole number")
        if not 1 <= limit <= MAX_LATEST_UPDATES:
            return text(HTTPStatus.BAD_REQUEST, f"limit: must be 1 to {MAX_LATEST_UPDATES}")
        scanned = limit if tenant.see_all else TENANT_UPDATES_SCANNED
        bodies = await asyncio.get_running_loop().run_in_executor(self._store_readers, self._service.store.latest_updates, scanned)
        updates = [pb.UpdatedJob.FromString(body) for body in bodies]
        return _json({"updates": [views.update_json(update) for update in updates if tenant.may_see(update.job_set)][:limit]})

    async def _job(self, job_id: int, tenant: Tenant) -> Response:
        found = await asyncio.get_running_loop().run_in_executor(self._store_readers, views.job_json, self._service, job_id, tenant)
        if found is None:  # the same answer for another tenant's job: it learns nothing of it
            return _json({"error": f"no job {job_id} on {self._service.name}"}, HTTPStatus.NOT_FOUND)
        return _json(found)

    # ---- the live feed -----------------------------------------------------------------------

    def _events(self, request: Request, tenant: Tenant) -> Response:
        cursor = request.headers.get("last-event-id") or request.query.get("after", str(self._service.updates.last_sequence))
        if not cursor.isdigit():
            return text(HTTPStatus.BAD_REQUEST, "after: the sequence to follow on from (a whole number; 0 for all)")
        if self._viewers >= MAX_VIEWERS:
            return text(HTTPStatus.SERVICE_UNAVAILABLE, f"{MAX_VIEWERS} viewers already follow this page's events")
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return Response(content_type="text/event-stream", headers=headers, stream=self._event_stream(int(cursor), tenant))

    async def _event_stream(self, after: int, tenant: Tenant) -> AsyncGenerator[bytes, None]:
        """Both sources, as they come: new updates (pulled from the update log one message at
        a time, as a gRPC stream pulls) and changes of the overview. Ends when either source
        does (the service stops, or a read failed): the browser reconnects and resumes."""
        self._viewers += 1
        events: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1)  # a pump waits while the viewer reads
        pumps = [
            asyncio.create_task(self._pump_updates(after, events, tenant)),
            asyncio.create_task(self._pump_overview(events, tenant)),
        ]
        try:
            yield b"retry: 2000\n\n"
            while True:
                next_event = asyncio.ensure_future(events.get())
                await asyncio.wait([next_event, *pumps], return_when=asyncio.FIRST_COMPLETED)
                if not next_event.done():
                    next_event.cancel()
                    for pump in pumps:
                        if pump.done() and not pump.cancelled() and pump.exception() is not None:
                            log.warning("the status page's event stream ended: %s", pump.exception())
                    return
                yield next_event.result()
        finally:
            self._viewers -= 1
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump_updates(self, after: int, events: asyncio.Queue[bytes], tenant: Tenant) -> None:
        """One `updates` event per message of the update log (up to a few thousand updates:
        a browser keeps up with a busy service), its id the last update's sequence; for a
        tenant who may not see everything, only its job sets' updates."""
        updates = self._subscribers.follow(after, "", keepalive=EVENT_KEEPALIVE_SECONDS, store_readers=self._store_readers)
        async for message in updates:
            if not message:
                await events.put(b": keep-alive\n\n")
                continue
            event = self._rendered.get(message) if tenant.see_all else _visible_updates(message, tenant)
            if event is None:
                continue
            await events.put(event)
            # A person reads no faster: let a busy service's updates gather, so a viewer costs
            # at most a few wake-ups a second, however many jobs end.
            await asyncio.sleep(EVENT_INTERVAL_SECONDS)

    async def _pump_overview(self, events: asyncio.Queue[bytes], tenant: Tenant) -> None:
        async for overview in self._overview.changes():
            await events.put(_event("overview", views.overview_for(overview, tenant)))


def _visible_updates(message: bytes, tenant: Tenant) -> bytes | None:
    """An update-log message as an `updates` event of the updates `tenant` may see (None: none)."""
    batch = [update for update in pb.GetUpdatedJobResponse.FromString(message).updates if tenant.may_see(update.job_set)]
    if not batch:
        return None
    return _event("updates", [views.update_json(update) for update in batch], batch[-1].sequence)


def _bearer_cookie(header: str) -> str:
    """The page's token cookie as an Authorization value ("" without one)."""
    for pair in header.split(";"):
        name, _, value = pair.strip().partition("=")
        if name == TOKEN_COOKIE and value:
            return f"Bearer {urllib.parse.unquote(value)}"
    return ""


class RenderedUpdates:
    """Update-log messages as `updates` events, rendered once for every viewer: viewers that
    follow along read the same messages (the log's in-memory tail hands out the same bytes),
    so only the first pays for decoding and JSON."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._events: collections.OrderedDict[bytes, bytes] = collections.OrderedDict()

    def get(self, message: bytes) -> bytes:
        event = self._events.get(message)
        if event is not None:
            self._events.move_to_end(message)
            return event
        batch = pb.GetUpdatedJobResponse.FromString(message).updates
        event = _event("updates", [views.update_json(update) for update in batch], batch[-1].sequence)
        self._events[message] = event
        if len(self._events) > self._size:
            self._events.popitem(last=False)
        return event


class OverviewFeed:
    """The overview, looked at once a second while anyone watches (whatever the number of
    viewers), and handed to each viewer when it changed."""

    def __init__(self, service: BatchService, calls: Executor) -> None:
        self._service = service
        self._calls = calls
        self._latest: dict[str, object] | None = None
        self._changed = asyncio.Condition()
        self._watchers = 0
        self._refresher: asyncio.Task[None] | None = None

    async def current(self) -> dict[str, object]:
        return await asyncio.get_running_loop().run_in_executor(self._calls, views.overview_json, self._service)

    async def changes(self) -> AsyncIterator[dict[str, object]]:
        """The overview now, then each time it changes."""
        self._watchers += 1
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.create_task(self._refresh())
        seen: dict[str, object] | None = None
        try:
            while True:
                async with self._changed:
                    await self._changed.wait_for(lambda: self._latest is not None and self._latest is not seen)
                    seen = self._latest
                assert seen is not None
                yield seen
        finally:
            self._watchers -= 1

    async def _refresh(self) -> None:
        while self._watchers:
            try:
                overview = await self.current()
            except Exception:  # noqa: BLE001 - a driver or store that fails once: look again
                log.warning("the status page could not read the overview", exc_info=True)
                await asyncio.sleep(OVERVIEW_INTERVAL_SECONDS)
                continue
            if overview != self._latest:
                async with self._changed:
                    self._latest = overview
                    self._changed.notify_all()
            await asyncio.sleep(OVERVIEW_INTERVAL_SECONDS)
        self._latest = None  # stale by the time someone watches again

    def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()


def _static_files() -> dict[str, tuple[bytes, str]]:
    """The page's files shipped in the package, by name: read once (they are small)."""
    folder = resources.files("batchgate.statuspage") / "static"
    found: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        suffix = entry.name[entry.name.rfind(".") :]
        if entry.is_file() and suffix in STATIC_TYPES:
            found[entry.name] = (entry.read_bytes(), STATIC_TYPES[suffix])
    return found


def _event(kind: str, data: object, event_id: int | None = None) -> bytes:
    """One server-sent event; JSON has no raw newlines, so `data` is one line."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _json(content: object, status: HTTPStatus = HTTPStatus.OK) -> Response:
    return Response(status, json.dumps(content).encode(), "application/json", {"Cache-Control": "no-cache"})
