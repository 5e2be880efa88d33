"""The Mesos v1 scheduler HTTP API, as a framework speaks it (no Mesos library): SUBSCRIBE and
read the RecordIO event stream, send calls with the stream's `Mesos-Stream-Id`, re-subscribe
when the stream breaks or its heartbeats stop, and read agents from the operator API.

Calls go out from sender threads, one lane per agent (hashed): calls about one agent keep
their order (a KILL never overtakes the ACCEPT that launched its task), calls about different
agents go out side by side; ACKNOWLEDGEs, whose order does not matter, from threads of their
own. See Mesos' docs/scheduler-http-api.md for the protocol.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import urllib3

from batchgate.backoff import Backoff

log = logging.getLogger(__name__)

Event = dict[str, Any]
Call = dict[str, Any]

CONNECT_TIMEOUT = 5.0
CALL_TIMEOUT = 30.0
MISSED_HEARTBEATS = 5  # the document's advice: re-subscribe after missing "a bunch (e.g., 5)"
LANES = 4  # sender threads for ordered calls: each call waits for the master's answer
ACK_SENDERS = 4


class MesosError(Exception):
    def __init__(self, message: str, *, unheard: bool = False) -> None:
        super().__init__(message)
        self.unheard = unheard  # the master surely did not act on the call


def master_url(address: str) -> str:
    """`host:port` (or an http(s) URL) as the master's base URL; ZooKeeper is refused."""
    if address.startswith("zk://"):
        raise ValueError(
            f"{address!r}: batchgate does not detect the leading master through ZooKeeper; give the leading master's host:port"
        )
    if "://" not in address:
        address = f"http://{address}"
    if not address.startswith(("http://", "https://")):
        raise ValueError(f"{address!r}: expected host:port or an http(s):// URL")
    return address.rstrip("/")


def error_message(event: Event) -> str:
    """An ERROR event's message (scheduler.proto: error.message)."""
    return str(event.get("error", {}).get("message") or event.get("message") or event)


def records(chunks: Any) -> Any:
    """RecordIO: "record-size LF record-data", again and again; yields each record's bytes."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while True:
            newline = buffer.find(b"\n")
            if newline < 0:
                break
            size = int(buffer[:newline])
            if len(buffer) < newline + 1 + size:
                break
            yield bytes(buffer[newline + 1 : newline + 1 + size])
            del buffer[: newline + 1 + size]


class SchedulerConnection:
    """One framework's subscription. `on_event` runs in the subscriber thread, one event at a
    time; `subscribe_body` makes each SUBSCRIBE call (so a framework id learnt is sent again)."""

    def __init__(
        self,
        url: str,
        subscribe_body: Callable[[], Call],
        on_event: Callable[[Event], None],
        on_disconnect: Callable[[], None],
        on_unheard: Callable[[Call], None],
        *,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.url = url
        self.subscribe_body = subscribe_body
        self.on_event = on_event
        self.on_disconnect = on_disconnect
        self.on_unheard = on_unheard  # a call the master surely did not act on
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth is not None:
            self.headers.update(urllib3.util.make_headers(basic_auth=f"{auth[0]}:{auth[1]}"))
        self.stream_id = ""
        self.framework_id = ""
        self.connected = threading.Event()
        # urllib3 directly: a third of requests' cost per call, which counts at three calls a job.
        self._pool = urllib3.PoolManager(maxsize=8, retries=False)
        self._stream: urllib3.BaseHTTPResponse | None = None
        self._last_event = time.monotonic()
        self._heartbeat = 15.0
        self._stopping = threading.Event()
        self._lanes: list[queue.Queue[Call | None]] = [queue.Queue() for _ in range(LANES)]
        self._acks: queue.Queue[Call | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._subscribe_loop, name="mesos-subscriber", daemon=True),
            threading.Thread(target=self._watch_heartbeats, name="mesos-heartbeats", daemon=True),
            *(
                threading.Thread(target=self._send_loop, args=(lane,), name=f"mesos-calls-{n}", daemon=True)
                for n, lane in enumerate(self._lanes)
            ),
            *(
                threading.Thread(target=self._send_loop, args=(self._acks,), name=f"mesos-acks-{n}", daemon=True)
                for n in range(ACK_SENDERS)
            ),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stopping.set()
        for lane in self._lanes:
            lane.put(None)
        for _ in range(ACK_SENDERS):
            self._acks.put(None)
        stream = self._stream
        if stream is not None:
            stream.shutdown()

    # ---- calls -------------------------------------------------------------------------------

    def send(self, call: Call, agent_id: str = "") -> None:
        """Queue a call; calls about the same agent ("" for none) go out in this order."""
        self._lanes[hash(agent_id) % LANES if agent_id else 0].put(call)

    def acknowledge(self, call: Call) -> None:
        self._acks.put(call)

    def post(self, call: Call) -> None:
        """Send a call now, in this thread. Raises MesosError."""
        if not self.connected.is_set():
            raise MesosError(f"{call['type']}: not subscribed to the Mesos master", unheard=True)
        call = {**call, "framework_id": {"value": self.framework_id}}
        response = self._request("/api/v1/scheduler", call, {"Mesos-Stream-Id": self.stream_id})
        if response.status != 202:
            text = response.data.decode(errors="replace").strip()
            raise MesosError(f"{call['type']}: the master answered {response.status} {text}", unheard=400 <= response.status < 500)

    def _request(self, path: str, call: Call, headers: dict[str, str] | None = None, **options: Any) -> urllib3.BaseHTTPResponse:
        try:
            return self._pool.request(
                "POST",
                f"{self.url}{path}",
                body=json.dumps(call).encode(),
                headers={**self.headers, **(headers or {})},
                timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=options.pop("read_timeout", CALL_TIMEOUT)),
                **options,
            )
        except urllib3.exceptions.NewConnectionError as error:
            raise MesosError(f"{call['type']}: {error}", unheard=True) from error
        except urllib3.exceptions.HTTPError as error:
            raise MesosError(f"{call['type']}: {error}") from error

    def _send_loop(self, calls: queue.Queue[Call | None]) -> None:
        while (call := calls.get()) is not None:
            try:
                self.post(call)
            except MesosError as error:
                # A call lost with a broken subscription: what it was for is found again by the
                # reconciliation after the next SUBSCRIBED (and a status update is resent).
                log.warning("mesos call failed: %s", error)
                if error.unheard:
                    self.on_unheard(call)

    def operator(self, call: Call) -> dict[str, Any]:
        """An operator API call (e.g. GET_AGENTS) and its answer. Raises MesosError."""
        response = self._request("/api/v1", call)
        if response.status != 200:
            raise MesosError(f"{call['type']}: the master answered {response.status} {response.data.decode(errors='replace').strip()}")
        answer: dict[str, Any] = json.loads(response.data)
        return answer

    # ---- the event stream --------------------------------------------------------------------

    def _subscribe_loop(self) -> None:
        backoff = Backoff(first=0.1, most=15.0)  # the document: back off, up to about 15 s
        while not self._stopping.is_set():
            try:
                self._subscribe_once(backoff)
            except (urllib3.exceptions.HTTPError, OSError, MesosError, ValueError) as error:
                if not self._stopping.is_set():
                    log.warning("mesos subscription ended: %s", error)
            except Exception:  # a bug handling an event must not end the subscription for good
                log.exception("handling the mesos event stream failed; subscribing again")
            finally:
                was_connected = self.connected.is_set()
                self.connected.clear()
                if was_connected:
                    self.on_disconnect()
            self._stopping.wait(backoff.next())

    def _subscribe_once(self, backoff: Backoff) -> None:
        body = self.subscribe_body()
        self._last_event = time.monotonic()
        # No read timeout: the heartbeat watcher ends a stream that falls silent.
        response = self._request("/api/v1/scheduler", body, preload_content=False, read_timeout=None)
        self._stream = response
        try:
            if response.status != 200:
                raise MesosError(f"SUBSCRIBE: the master answered {response.status} {response.read().decode(errors='replace').strip()}")
            stream_id = response.headers.get("Mesos-Stream-Id", "")
            for record in records(response.read_chunked()):
                self._last_event = time.monotonic()
                event: Event = json.loads(record)
                if event.get("type") == "SUBSCRIBED":
                    subscribed = event["subscribed"]
                    self.framework_id = subscribed["framework_id"]["value"]
                    self._heartbeat = float(subscribed.get("heartbeat_interval_seconds", 15.0))
                    self.stream_id = stream_id
                    self.connected.set()
                    backoff.reset()
                self.on_event(event)
                if event.get("type") == "ERROR":
                    # The document: abort on ERROR, and subscribe again as need be.
                    raise MesosError(f"the master sent ERROR: {error_message(event)}")
        finally:
            response.close()
        if not self._stopping.is_set():
            raise MesosError("the master closed the event stream")

    def _watch_heartbeats(self) -> None:
        while not self._stopping.wait(0.1):
            stream = self._stream
            silent_for = time.monotonic() - self._last_event
            if stream is not None and silent_for > MISSED_HEARTBEATS * self._heartbeat:
                log.warning(
                    "no event from the mesos master for %.1f s (heartbeats every %g s): subscribing again", silent_for, self._heartbeat
                )
                self._last_event = time.monotonic()
                stream.shutdown()  # the subscriber's read fails, and it subscribes again
