"""The Mesos v1 scheduler HTTP API, as a framework speaks it (no Mesos library): SUBSCRIBE and
read the RecordIO event stream, send calls with the stream's `Mesos-Stream-Id`, re-subscribe
when the stream breaks or its heartbeats stop, and read agents from the operator API.

Calls go out from sender threads in the order they were queued (a KILL never overtakes the
ACCEPT that launched its task); ACKNOWLEDGEs, whose order does not matter, from threads of their
own. See Mesos' docs/scheduler-http-api.md for the protocol.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from batchgate.backoff import Backoff

log = logging.getLogger(__name__)

Event = dict[str, Any]
Call = dict[str, Any]

CONNECT_TIMEOUT = 5.0
CALL_TIMEOUT = 30.0
MISSED_HEARTBEATS = 5  # the document's advice: re-subscribe after missing "a bunch (e.g., 5)"
ACK_SENDERS = 2


class MesosError(Exception):
    pass


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
        *,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.url = url
        self.subscribe_body = subscribe_body
        self.on_event = on_event
        self.on_disconnect = on_disconnect
        self.auth = auth
        self.stream_id = ""
        self.framework_id = ""
        self.connected = threading.Event()
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=8)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._stream: requests.Response | None = None
        self._last_event = time.monotonic()
        self._heartbeat = 15.0
        self._stopping = threading.Event()
        self._calls: queue.Queue[Call | None] = queue.Queue()
        self._acks: queue.Queue[Call | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._subscribe_loop, name="mesos-subscriber", daemon=True),
            threading.Thread(target=self._watch_heartbeats, name="mesos-heartbeats", daemon=True),
            threading.Thread(target=self._send_loop, args=(self._calls,), name="mesos-calls", daemon=True),
            *(threading.Thread(target=self._send_loop, args=(self._acks,), name=f"mesos-acks-{n}", daemon=True) for n in range(ACK_SENDERS)),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._calls.put(None)
        for _ in range(ACK_SENDERS):
            self._acks.put(None)
        stream = self._stream
        if stream is not None:
            _abort(stream)

    # ---- calls -------------------------------------------------------------------------------

    def send(self, call: Call) -> None:
        """Queue a call; calls go out in this order."""
        self._calls.put(call)

    def acknowledge(self, call: Call) -> None:
        self._acks.put(call)

    def post(self, call: Call) -> None:
        """Send a call now, in this thread. Raises MesosError."""
        if not self.connected.is_set():
            raise MesosError("not subscribed to the Mesos master")
        call = {**call, "framework_id": {"value": self.framework_id}}
        try:
            response = self._session.post(
                f"{self.url}/api/v1/scheduler",
                json=call,
                headers={"Mesos-Stream-Id": self.stream_id, "Accept": "application/json"},
                auth=self.auth,
                timeout=(CONNECT_TIMEOUT, CALL_TIMEOUT),
            )
        except requests.RequestException as error:
            raise MesosError(f"{call['type']}: {error}") from error
        if response.status_code != 202:
            raise MesosError(f"{call['type']}: the master answered {response.status_code} {response.text.strip()}")

    def _send_loop(self, calls: queue.Queue[Call | None]) -> None:
        while (call := calls.get()) is not None:
            try:
                self.post(call)
            except MesosError as error:
                # A call lost with a broken subscription: what it was for is found again by the
                # reconciliation after the next SUBSCRIBED (and a status update is resent).
                log.warning("mesos call failed: %s", error)

    def operator(self, call: Call) -> dict[str, Any]:
        """An operator API call (e.g. GET_AGENTS) and its answer. Raises MesosError."""
        try:
            response = self._session.post(
                f"{self.url}/api/v1", json=call, headers={"Accept": "application/json"}, auth=self.auth, timeout=(CONNECT_TIMEOUT, CALL_TIMEOUT)
            )
        except requests.RequestException as error:
            raise MesosError(f"{call['type']}: {error}") from error
        if response.status_code != 200:
            raise MesosError(f"{call['type']}: the master answered {response.status_code} {response.text.strip()}")
        answer: dict[str, Any] = response.json()
        return answer

    # ---- the event stream --------------------------------------------------------------------

    def _subscribe_loop(self) -> None:
        backoff = Backoff(first=0.1, most=15.0)  # the document: back off, up to about 15 s
        while not self._stopping.is_set():
            try:
                self._subscribe_once(backoff)
            except (requests.RequestException, MesosError, ValueError) as error:
                if not self._stopping.is_set():
                    log.warning("mesos subscription ended: %s", error)
            finally:
                was_connected = self.connected.is_set()
                self.connected.clear()
                if was_connected:
                    self.on_disconnect()
            self._stopping.wait(backoff.next())

    def _subscribe_once(self, backoff: Backoff) -> None:
        body = self.subscribe_body()
        self._last_event = time.monotonic()
        response = self._session.post(
            f"{self.url}/api/v1/scheduler",
            json=body,
            headers={"Accept": "application/json"},
            auth=self.auth,
            stream=True,
            timeout=(CONNECT_TIMEOUT, None),  # the heartbeat watcher closes a silent stream
        )
        self._stream = response
        with response:
            if response.status_code != 200:
                raise MesosError(f"SUBSCRIBE: the master answered {response.status_code} {response.text.strip()}")
            stream_id = response.headers.get("Mesos-Stream-Id", "")
            for record in records(response.iter_content(chunk_size=None)):
                self._last_event = time.monotonic()
                event: Event = json.loads(record)
                if event.get("type") == "SUBSCRIBED":
                    subscribed = event["subscribed"]
                    self.framework_id = subscribed["framework_id"]["value"]
                    self._heartbeat = float(subscribed.get("heartbeat_interval_seconds", 15.0))
                    self.stream_id = stream_id
                    self.connected.set()
                    backoff.reset()
                elif event.get("type") == "ERROR":
                    # The document: abort on ERROR, and subscribe again as need be.
                    raise MesosError(f"the master sent ERROR: {event.get('error', {}).get('message', event)}")
                self.on_event(event)
        if not self._stopping.is_set():
            raise MesosError("the master closed the event stream")

    def _watch_heartbeats(self) -> None:
        while not self._stopping.wait(0.1):
            stream = self._stream
            silent_for = time.monotonic() - self._last_event
            if stream is not None and silent_for > MISSED_HEARTBEATS * self._heartbeat:
                log.warning("no event from the mesos master for %.1f s (heartbeats every %g s): subscribing again", silent_for, self._heartbeat)
                self._last_event = time.monotonic()
                _abort(stream)  # the subscriber's read fails, and it subscribes again


def _abort(response: requests.Response) -> None:
    """End a streaming response that another thread is reading: shutting the socket down wakes a
    blocked read, which closing it alone does not."""
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    response.close()
