"""A Mesos master of the tests' own: the v1 scheduler HTTP API over real HTTP, with simulated
agents whose tasks run as real local processes.

No Mesos can be installed here, so the Mesos backend is tested against this. It follows Apache
Mesos' "Scheduler HTTP API" document (docs/scheduler-http-api.md in the Mesos repository,
published at mesos.apache.org/documentation/latest/scheduler-http-api/), and, where that document
defers to them, include/mesos/v1/mesos.proto and scheduler.proto:

- `POST /api/v1/scheduler` takes JSON Calls. SUBSCRIBE answers `200 OK` with
  `Transfer-Encoding: chunked` and a `Mesos-Stream-Id` header, and keeps the connection open: a
  RecordIO stream ("record-size LF record-data", the size in decimal) of Events, the first one
  SUBSCRIBED (framework id, heartbeat_interval_seconds). A SUBSCRIBE carrying a
  `Mesos-Stream-Id` is refused 400; one naming a framework id re-subscribes that framework.
- Every other call answers `202 Accepted`; it must carry the subscription's `Mesos-Stream-Id`
  (400 otherwise) and its framework must be subscribed (403 otherwise). ACCEPT (LAUNCH
  operations), DECLINE (with `filters.refuse_seconds`, default 5 s as in mesos.proto), REVIVE,
  SUPPRESS, KILL, ACKNOWLEDGE, RECONCILE and TEARDOWN are served.
- Events: SUBSCRIBED, OFFERS (one per agent: what is neither used nor offered; made every
  allocation interval, and at once on SUBSCRIBE, REVIVE and an agent's return), RESCIND (an
  agent dropped), UPDATE, FAILURE (an agent removed), ERROR, HEARTBEAT (every interval).
- Status updates come from each agent's status update manager: each carries a `uuid` (raw bytes,
  Base64 in JSON), is resent until the scheduler ACKNOWLEDGEs it, and a task's next update waits
  for the acknowledgement of the one before. Updates the master makes itself (reconciliation,
  TASK_UNREACHABLE, TASK_GONE, an unknown task's KILL) carry no uuid and are sent once.
- Tasks run as the command executor runs them: `sh -c value` (shell) or `value` with `arguments`,
  in a sandbox directory holding `stdout` and `stderr`, with CommandInfo.environment added to the
  agent's; TASK_RUNNING once started; TASK_FINISHED / TASK_FAILED with the message
  "Command exited with status N" or "Command terminated with signal <strsignal>"; TASK_KILLED
  for a KILL (SIGTERM, then SIGKILL after the grace period); TASK_FAILED with
  REASON_MAX_COMPLETION_TIME_REACHED past `max_completion_time`; TASK_ERROR for an invalid task.
- Frameworks that announce the PARTITION_AWARE capability get TASK_UNREACHABLE, TASK_GONE and
  TASK_UNKNOWN where others get TASK_LOST. A framework whose subscription breaks is kept for its
  `failover_timeout`, then torn down (its tasks killed).
- The operator API's `GET_AGENTS` (`POST /api/v1`) lists agents with their total, allocated and
  offered resources, as a framework reads them for capacity, and each agent's libprocess `pid`
  (`slave(1)@127.0.0.1:PORT`): every agent serves its own `/state` and files API on that port, over
  the real sandboxes its tasks write their stdout and stderr to (fake_agent.py).
- HTTP basic authentication when the master is given credentials (401 otherwise).

The tests steer it: drop an agent (partitioned: its tasks run on, the master says UNREACHABLE),
restore it, remove it for good (its tasks die, TASK_GONE), garbage-collect a task's sandbox,
silence the event stream (to make a
scheduler miss heartbeats), hold acknowledgements back (so updates are resent), and read what
happened (launches, subscriptions, deliveries, offer-to-launch latencies).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import itertools
import json
import os
import queue
import select
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from fake_agent import MAX_COMPLETED_EXECUTORS, FakeAgentHttp
from fake_http import QuietServer, authorized, handler_class, reply

TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR"}
SCALARS = ("cpus", "mem", "disk", "gpus")
DEFAULT_REFUSE_SECONDS = 5.0  # Filters.refuse_seconds' default in mesos.proto
DEFAULT_KILL_GRACE = 3.0  # the command executor's default grace period
TICK = 0.02


@dataclass(frozen=True)
class AgentSpec:
    hostname: str
    cpus: float
    mem: float  # MB, as Mesos counts memory
    disk: float  # MB
    gpus: float = 0
    attributes: dict[str, str] = field(default_factory=dict)


Resources = dict[str, float]


def _add(a: Resources, b: Resources, sign: float = 1) -> Resources:
    return {name: round(a.get(name, 0) + sign * b.get(name, 0), 6) for name in SCALARS}


def _fits(wanted: Resources, free: Resources) -> bool:
    return all(wanted.get(name, 0) <= free.get(name, 0) + 1e-9 for name in SCALARS)


def resources_json(resources: Resources, role: str = "*") -> list[dict[str, Any]]:
    return [
        {"name": name, "type": "SCALAR", "scalar": {"value": value}, "role": "*", "allocation_info": {"role": role}}
        for name, value in resources.items()
        if value > 0
    ]


def parse_resources(items: list[dict[str, Any]]) -> Resources:
    parsed: Resources = {}
    for item in items:
        if item.get("type", "SCALAR") == "SCALAR" and item["name"] in SCALARS:
            parsed[item["name"]] = parsed.get(item["name"], 0) + float(item["scalar"]["value"])
    return parsed


class _Subscription:
    """One SUBSCRIBE connection: events queue here and its handler thread writes them out."""

    def __init__(self, framework_id: str, heartbeat: float) -> None:
        self.framework_id = framework_id
        self.stream_id = str(uuid.uuid4())
        self.heartbeat = heartbeat
        self.records: queue.Queue[bytes | None] = queue.Queue()
        self.closed = threading.Event()
        self.silent = threading.Event()  # a test's partition: nothing is written, the socket stays open

    def send(self, event: dict[str, Any]) -> None:
        if not self.closed.is_set():
            data = json.dumps(event).encode()
            self.records.put(b"%d\n%s" % (len(data), data))

    def close(self) -> None:
        self.closed.set()
        self.records.put(None)


@dataclass
class _Task:
    task_id: str
    framework_id: str
    agent_id: str
    name: str
    resources: Resources
    state: str = "TASK_STAGING"  # the latest state the agent has
    master_state: str = "TASK_STAGING"  # what the master believes (UNREACHABLE while partitioned)
    process: subprocess.Popen[bytes] | None = None
    kill_requested: bool = False
    timed_out: bool = False
    kill_grace: float = DEFAULT_KILL_GRACE
    # The agent's status update stream for this task: sent in order, each until acknowledged.
    pending: collections.deque[dict[str, Any]] = field(default_factory=collections.deque)
    last_sent: float = 0.0


@dataclass
class _Agent:
    agent_id: str
    spec: AgentSpec
    http: FakeAgentHttp
    state: str = "active"  # active, unreachable, gone
    used: Resources = field(default_factory=dict)
    offered: Resources = field(default_factory=dict)

    @property
    def total(self) -> Resources:
        return {"cpus": self.spec.cpus, "mem": self.spec.mem, "disk": self.spec.disk, "gpus": self.spec.gpus}

    def free(self) -> Resources:
        return _add(_add(self.total, self.used, -1), self.offered, -1)

    def info(self) -> dict[str, Any]:
        return {
            "id": {"value": self.agent_id},
            "hostname": self.spec.hostname,
            "port": self.http.port,
            "resources": resources_json(self.total),
            "attributes": [{"name": name, "type": "TEXT", "text": {"value": value}} for name, value in self.spec.attributes.items()],
        }


@dataclass
class _Framework:
    framework_id: str
    info: dict[str, Any]
    subscription: _Subscription | None = None
    disconnected_at: float | None = None
    suppressed: bool = False
    # agent id -> (refused until, the resources refused): an offer of no more than those is held
    # back until then (a larger one, e.g. once a task ended, is made at once), as Mesos' allocator does.
    filters: dict[str, tuple[float, Resources]] = field(default_factory=dict)
    tasks: dict[str, _Task] = field(default_factory=dict)

    @property
    def partition_aware(self) -> bool:
        return any(capability.get("type") == "PARTITION_AWARE" for capability in self.info.get("capabilities", []))

    @property
    def role(self) -> str:
        roles = self.info.get("roles") or [self.info.get("role", "*")]
        return roles[0]


@dataclass
class _Offer:
    offer_id: str
    framework_id: str
    agent_id: str
    resources: Resources
    sent_at: float


class FakeMesosMaster:
    def __init__(
        self,
        agents: list[AgentSpec],
        work_dir: Path,
        *,
        heartbeat_interval: float = 15.0,
        resend_interval: float = 10.0,  # the agent's first retry interval (STATUS_UPDATE_RETRY_INTERVAL_MIN)
        allocation_interval: float = 1.0,  # the master's --allocation_interval
        credentials: tuple[str, str] | None = None,
        max_completed_executors: int = MAX_COMPLETED_EXECUTORS,  # each agent's, per framework
    ) -> None:
        self.work_dir = work_dir
        self.heartbeat_interval = heartbeat_interval
        self.resend_interval = resend_interval
        self.allocation_interval = allocation_interval
        self._allocated_at = 0.0
        self._watched: dict[int, tuple[_Task, float | None]] = {}  # pidfd -> task, max completion deadline
        self._wake_reader, self._wake_writer = os.pipe()
        self._launches: collections.deque[tuple[_Framework, _Task, dict[str, Any]]] = collections.deque()
        self.credentials = credentials
        self.master_id = str(uuid.uuid4())
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._agents = {
            agent_id: _Agent(agent_id, spec, FakeAgentHttp(agent_id, spec.hostname, work_dir, credentials, max_completed_executors))
            for agent_id, spec in ((f"{self.master_id}-S{index}", spec) for index, spec in enumerate(agents))
        }
        self._frameworks: dict[str, _Framework] = {}
        self._offers: dict[str, _Offer] = {}
        self._removed: set[str] = set()  # framework ids torn down
        self._refusing_accepts = 0
        self._dropping_accepts = 0
        self._stopping = threading.Event()
        self._holding_acks: set[str] = set()
        self._holding_updates = False
        # What happened, for the tests to read.
        self.launched: list[str] = []  # task ids, each time a task is launched
        self.launched_on: dict[str, str] = {}  # task id -> agent id
        self.subscriptions: list[dict[str, Any]] = []  # framework_info of every SUBSCRIBE
        self.calls: collections.Counter[str] = collections.Counter()
        self.deliveries: collections.Counter[tuple[str, str]] = collections.Counter()  # (task, state) sent with a uuid
        self.reconciled: list[list[str]] = []  # task ids of each RECONCILE ([] for all)
        self.offer_to_launch: list[float] = []  # seconds from an offer's sending to its task's start
        self._server = QuietServer(("127.0.0.1", 0), handler_class("POST", self._serve))
        self._threads = [
            threading.Thread(target=self._server.serve_forever, name="fake-master-http", daemon=True),
            threading.Thread(target=self._clock, name="fake-master-clock", daemon=True),
            threading.Thread(target=self._reap_loop, name="fake-master-reaper", daemon=True),
        ]

    # ---- life and test controls --------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeMesosMaster:
        for agent in self._agents.values():
            agent.http.start()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            for framework in self._frameworks.values():
                if framework.subscription:
                    framework.subscription.close()
                for task in framework.tasks.values():
                    if task.process and task.process.poll() is None:
                        _signal_group(task.process, signal.SIGKILL)
        self._server.shutdown()
        self._server.server_close()
        for agent in self._agents.values():
            agent.http.stop()

    def agent_ids(self) -> list[str]:
        return list(self._agents)

    def running_task_ids(self) -> set[str]:
        with self._lock:
            return {
                task.task_id for framework in self._frameworks.values() for task in framework.tasks.values() if task.state == "TASK_RUNNING"
            }

    def tasks_on(self, agent_id: str) -> set[str]:
        with self._lock:
            return {task.task_id for task in self._all_tasks() if task.agent_id == agent_id and task.state not in TERMINAL}

    def drop_agent(self, agent_id: str) -> None:
        """A partition: the agent's tasks run on, unseen; the master reports them UNREACHABLE."""
        with self._lock:
            agent = self._agents[agent_id]
            agent.state = "unreachable"
            self._rescind_offers_on(agent_id)
            for task in self._all_tasks():
                if task.agent_id == agent_id and task.master_state not in TERMINAL:
                    framework = self._frameworks[task.framework_id]
                    task.master_state = "TASK_UNREACHABLE" if framework.partition_aware else "TASK_LOST"
                    self._master_update(task, task.master_state, "REASON_AGENT_UNREACHABLE", f"agent {agent_id} is unreachable")

    def restore_agent(self, agent_id: str) -> None:
        """The partition heals: the agent re-registers and sends what it held back."""
        with self._lock:
            self._agents[agent_id].state = "active"
            for task in self._all_tasks():
                if task.agent_id == agent_id:
                    task.master_state = task.state
                    task.last_sent = 0.0  # resend held updates at once
                    if task.kill_requested and task.process and task.process.poll() is None:
                        threading.Thread(target=self._terminate, args=(task.process, task.kill_grace), daemon=True).start()
            self._allocate()

    def remove_agent(self, agent_id: str) -> None:
        """The agent is gone for good: its tasks die with it, and its HTTP endpoints."""
        with self._lock:
            agent = self._agents[agent_id]
            agent.state = "gone"
            agent.http.stop()
            self._rescind_offers_on(agent_id)
            for task in self._all_tasks():
                if task.agent_id == agent_id and task.state not in TERMINAL:
                    if task.process and task.process.poll() is None:
                        _signal_group(task.process, signal.SIGKILL)
                    task.state = "TASK_GONE"
                    task.pending.clear()
                    framework = self._frameworks[task.framework_id]
                    task.master_state = "TASK_GONE" if framework.partition_aware else "TASK_LOST"
                    self._master_update(task, task.master_state, "REASON_AGENT_REMOVED", f"agent {agent_id} was removed")
            for framework in self._frameworks.values():
                if framework.subscription:
                    framework.subscription.send({"type": "FAILURE", "failure": {"agent_id": {"value": agent_id}}})

    def agent_address(self, agent_id: str) -> str:
        return f"127.0.0.1:{self._agents[agent_id].http.port}"

    def collect_sandbox(self, task_id: str) -> None:
        """The agent garbage-collects an ended task's sandbox (as after its --gc_delay)."""
        self._agents[self.launched_on[task_id]].http.collect_garbage(task_id)

    def kill_task(self, task_id: str) -> None:
        """Kill a task as someone other than its framework would (an operator): TASK_KILLED."""
        with self._lock:
            task = self._task(task_id)
            self._kill(self._frameworks[task.framework_id], task_id)

    def refuse_next_accepts(self, count: int) -> None:
        """Answer the next `count` ACCEPTs 403, unheard (as for a framework whose subscription the
        master has just dropped)."""
        with self._lock:
            self._refusing_accepts = count

    def drop_next_launches(self, count: int) -> None:
        """Drop the tasks of the next `count` ACCEPTs (TASK_DROPPED: never started, as for
        rescinded offers)."""
        with self._lock:
            self._dropping_accepts = count

    def silence(self) -> None:
        """Stop writing to every open event stream (no heartbeats either), connections left open."""
        with self._lock:
            for framework in self._frameworks.values():
                if framework.subscription:
                    framework.subscription.silent.set()

    def hold_updates(self, holding: bool = True) -> None:
        """Keep agents' status updates from the framework (they queue, as behind a slow link);
        False sends what queued."""
        with self._lock:
            self._holding_updates = holding
            if not holding:
                for framework in self._frameworks.values():
                    for task in framework.tasks.values():
                        self._forward(task)

    def hold_acknowledgements(self, *states: str) -> None:
        """ACKNOWLEDGEs of updates in these states are answered 202 and ignored, so those updates
        are resent (none: acknowledgements count again)."""
        with self._lock:
            self._holding_acks = set(states)

    def connected_framework_ids(self) -> list[str]:
        with self._lock:
            return [
                fid for fid, framework in self._frameworks.items() if framework.subscription and not framework.subscription.closed.is_set()
            ]

    # ---- HTTP --------------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if handler.path not in ("/api/v1/scheduler", "/api/v1"):
            return reply(handler, 404, "no such endpoint")
        if not authorized(handler, self.credentials):
            return reply(handler, 401, "authentication required", {"WWW-Authenticate": 'Basic realm="mesos"'})
        if "json" not in handler.headers.get("Content-Type", ""):
            return reply(handler, 415, "Expecting 'Content-Type' of application/json")
        try:
            call = json.loads(body)
        except ValueError as error:
            return reply(handler, 400, f"Failed to parse body into JSON: {error}")
        if handler.path == "/api/v1":
            return self._operator_call(handler, call)
        self.calls[call.get("type", "")] += 1
        if call.get("type") == "SUBSCRIBE":
            return self._subscribe(handler, call)
        with self._lock:
            framework = self._frameworks.get(call.get("framework_id", {}).get("value", ""))
            subscription = framework.subscription if framework else None
            if framework is None or subscription is None or subscription.closed.is_set():
                return reply(handler, 403, "Framework is not subscribed")
            if call.get("type") == "ACCEPT" and self._refusing_accepts:
                self._refusing_accepts -= 1
                self._drop_offers_of(framework)  # as when the master dropped the subscription
                return reply(handler, 403, "Framework is not subscribed")
            if handler.headers.get("Mesos-Stream-Id") != subscription.stream_id:
                return reply(
                    handler, 400, "The stream ID included in this request didn't match the stream ID currently associated with framework ID"
                )
            problem = self._scheduler_call(framework, call)
        self._start_launches()
        if problem:
            return reply(handler, 400, problem)
        reply(handler, 202, "")

    def _operator_call(self, handler: BaseHTTPRequestHandler, call: dict[str, Any]) -> None:
        if call.get("type") != "GET_AGENTS":
            return reply(handler, 400, f"unsupported operator call {call.get('type')!r}")
        with self._lock:
            agents = [
                {
                    "agent_info": agent.info(),
                    "pid": agent.http.pid,
                    "active": True,
                    "total_resources": resources_json(agent.total),
                    "allocated_resources": resources_json(_add(agent.used, agent.offered)),  # tasks' and offers'
                    "offered_resources": resources_json(agent.offered),
                }
                for agent in self._agents.values()
                if agent.state == "active"
            ]
        data = json.dumps({"type": "GET_AGENTS", "get_agents": {"agents": agents}}).encode()
        reply(handler, 200, data, {"Content-Type": "application/json"})

    def _subscribe(self, handler: BaseHTTPRequestHandler, call: dict[str, Any]) -> None:
        if "Mesos-Stream-Id" in handler.headers:
            return reply(handler, 400, "Subscribe calls should not include the 'Mesos-Stream-Id' header")
        info = call.get("subscribe", {}).get("framework_info")
        if not info or not info.get("user") or not info.get("name"):
            return reply(handler, 400, "Expecting 'subscribe.framework_info' with 'user' and 'name'")
        self.subscriptions.append(info)
        with self._lock:
            framework_id = info.get("id", {}).get("value") or f"{self.master_id}-{next(self._ids):04d}"
            if framework_id in self._removed:  # past its failover timeout, or torn down: for good
                subscription = _Subscription(framework_id, self.heartbeat_interval)
                subscription.send({"type": "ERROR", "error": {"message": "Framework has been removed"}})
                subscription.close()
                return self._stream_to(handler, subscription)
            framework = self._frameworks.get(framework_id)
            if framework is None:
                framework = self._frameworks[framework_id] = _Framework(framework_id, info)
            elif framework.subscription:
                framework.subscription.close()  # only one subscription per framework
                self._drop_offers_of(framework)
            framework.info = {**info, "id": {"value": framework_id}}
            subscription = _Subscription(framework_id, self.heartbeat_interval)
            framework.subscription = subscription
            framework.disconnected_at = None
            subscription.send(
                {
                    "type": "SUBSCRIBED",
                    "subscribed": {
                        "framework_id": {"value": framework_id},
                        "heartbeat_interval_seconds": self.heartbeat_interval,
                        "master_info": {"id": self.master_id, "ip": 2130706433, "port": self._server.server_address[1]},
                    },
                }
            )
            for task in framework.tasks.values():
                task.last_sent = 0.0  # pending updates go out on the new stream
            self._allocate()
        try:
            self._stream_to(handler, subscription)
        finally:
            with self._lock:
                if framework.subscription is subscription:
                    framework.subscription = None
                    framework.disconnected_at = time.monotonic()
                    self._drop_offers_of(framework)
            subscription.close()
            handler.close_connection = True

    def _stream_to(self, handler: BaseHTTPRequestHandler, subscription: _Subscription) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("Mesos-Stream-Id", subscription.stream_id)
        handler.end_headers()
        last_write = time.monotonic()
        while not self._stopping.is_set():
            try:
                record = subscription.records.get(timeout=min(0.2, subscription.heartbeat))
            except queue.Empty:
                record = b""
            if record is None:
                handler.close_connection = True
                with contextlib.suppress(OSError):
                    handler.wfile.write(b"0\r\n\r\n")  # the end of the chunked body
                return
            if subscription.silent.is_set():
                if _peer_closed(handler):
                    return
                continue
            if not record and time.monotonic() - last_write >= subscription.heartbeat:
                data = b'{"type":"HEARTBEAT"}'
                record = b"%d\n%s" % (len(data), data)
            if not record:
                continue
            try:
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(record), record))
                handler.wfile.flush()
            except OSError:
                return
            last_write = time.monotonic()

    # ---- scheduler calls (under the lock) ----------------------------------------------------

    def _scheduler_call(self, framework: _Framework, call: dict[str, Any]) -> str:
        kind = call.get("type")
        if kind == "ACCEPT":
            return self._accept(framework, call.get("accept", {}))
        if kind == "DECLINE":
            decline = call.get("decline", {})
            for offer_id in decline.get("offer_ids", []):
                offer = self._offers.pop(offer_id["value"], None)
                if offer and offer.framework_id == framework.framework_id:
                    self._return_offer(framework, offer, offer.resources, decline.get("filters"))
        elif kind == "REVIVE":
            framework.filters.clear()
            framework.suppressed = False
            self._allocate()
        elif kind == "SUPPRESS":
            framework.suppressed = True
        elif kind == "KILL":
            self._kill(framework, call["kill"]["task_id"]["value"])
        elif kind == "ACKNOWLEDGE":
            acknowledge = call["acknowledge"]
            self._acknowledge(framework, acknowledge["task_id"]["value"], acknowledge["uuid"])
        elif kind == "RECONCILE":
            self._reconcile(framework, [item["task_id"]["value"] for item in call.get("reconcile", {}).get("tasks", [])])
        elif kind == "TEARDOWN":
            self._teardown(framework)
        else:
            return f"unsupported call type {kind!r}"
        return ""

    def _accept(self, framework: _Framework, accept: dict[str, Any]) -> str:
        offers = [self._offers.pop(item["value"], None) for item in accept.get("offer_ids", [])]
        launches = [
            task
            for operation in accept.get("operations", [])
            if operation.get("type") == "LAUNCH"
            for task in operation["launch"]["task_infos"]
        ]
        valid = [offer for offer in offers if offer is not None and offer.framework_id == framework.framework_id]
        dropping = bool(launches) and self._dropping_accepts > 0
        self._dropping_accepts -= dropping
        if dropping or len(valid) != len(offers) or len({offer.agent_id for offer in valid}) > 1:
            for info in launches:  # invalid offers (rescinded, or on several agents): the tasks are dropped
                task = self._new_task(framework, info, info.get("agent_id", {}).get("value", ""))
                state = "TASK_DROPPED" if framework.partition_aware else "TASK_LOST"
                task.state = task.master_state = state
                self._master_update(task, state, "REASON_INVALID_OFFERS", "Task launched with invalid offers")
            for offer in valid:
                self._return_offer(framework, offer, offer.resources, accept.get("filters"))
            return ""
        remaining: Resources = {}
        for offer in valid:
            remaining = _add(remaining, offer.resources)
        agent = self._agents[valid[0].agent_id] if valid else None
        for info in launches:
            task_id = info.get("task_id", {}).get("value", "")
            wanted = parse_resources(info.get("resources", []))
            problem = ""
            if agent is None or info.get("agent_id", {}).get("value") != agent.agent_id:
                problem = "Task uses an agent other than the offers'"
            elif not task_id or (task_id in framework.tasks and framework.tasks[task_id].state not in TERMINAL):
                problem = f"Task has duplicate ID: {task_id}"
            elif "command" not in info:
                problem = "Task has no command and no executor"
            elif not _fits(wanted, remaining):
                problem = "Task uses more resources than offered"
            task = self._new_task(framework, info, agent.agent_id if agent else "")
            if problem:
                task.state = task.master_state = "TASK_ERROR"
                self._master_update(task, "TASK_ERROR", "REASON_TASK_INVALID", problem)
                continue
            assert agent is not None
            remaining = _add(remaining, wanted, -1)
            agent.used = _add(agent.used, wanted)
            self.offer_to_launch.append(time.monotonic() - min(offer.sent_at for offer in valid))
            self._launches.append((framework, task, info))  # started once the lock is let go
        for offer in valid:
            agent_of_offer = self._agents[offer.agent_id]
            agent_of_offer.offered = _add(agent_of_offer.offered, offer.resources, -1)
        if agent is not None:
            self._filter(framework, agent.agent_id, accept.get("filters"), remaining)
        return ""

    def _new_task(self, framework: _Framework, info: dict[str, Any], agent_id: str) -> _Task:
        task = _Task(
            info.get("task_id", {}).get("value", ""),
            framework.framework_id,
            agent_id,
            info.get("name", ""),
            parse_resources(info.get("resources", [])),
        )
        framework.tasks[task.task_id] = task
        return task

    def _start_launches(self) -> None:
        """Start the tasks ACCEPT launched, outside the lock: forking takes a while."""
        while True:
            with self._lock:
                if not self._launches:
                    return
                framework, task, info = self._launches.popleft()
            self._launch(framework, task, info)

    def _launch(self, framework: _Framework, task: _Task, info: dict[str, Any]) -> None:
        command = info["command"]
        task_json = {
            "id": task.task_id,
            "name": task.name,
            "framework_id": framework.framework_id,
            "executor_id": "",
            "slave_id": task.agent_id,
            "state": "TASK_STAGING",
            "resources": task.resources,
        }
        sandbox = self._agents[task.agent_id].http.launch(framework.info, task_json)
        environment = {**os.environ, "MESOS_SANDBOX": str(sandbox), "MESOS_TASK_ID": task.task_id, "MESOS_AGENT_ID": task.agent_id}
        for variable in command.get("environment", {}).get("variables", []):
            environment[variable["name"]] = variable.get("value", "")
        if command.get("shell", True):
            argv = ["/bin/sh", "-c", command["value"]]
        else:
            argv = [command["value"], *command.get("arguments", [])[1:]]
        self.launched.append(task.task_id)
        self.launched_on[task.task_id] = task.agent_id
        grace_ns = info.get("kill_policy", {}).get("grace_period", {}).get("nanoseconds")
        if grace_ns is not None:
            task.kill_grace = grace_ns / 1e9
        try:
            with open(sandbox / "stdout", "ab") as stdout, open(sandbox / "stderr", "ab") as stderr:
                process = subprocess.Popen(
                    argv, cwd=sandbox, env=environment, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, start_new_session=True
                )
        except OSError as error:
            with self._lock:
                self._agent_update(task, "TASK_FAILED", "REASON_COMMAND_EXECUTOR_FAILED", f"Failed to launch container: {error}")
            return
        with self._lock:
            task.process = process
            self._agent_update(task, "TASK_RUNNING", "", "")
            if task.kill_requested:  # killed while it was being started
                threading.Thread(target=self._terminate, args=(process, task.kill_grace), daemon=True).start()
        limit = info.get("max_completion_time", {}).get("nanoseconds")
        deadline = time.monotonic() + limit / 1e9 if limit else None
        self._watched[os.pidfd_open(process.pid)] = (task, deadline)
        os.write(self._wake_writer, b"!")

    def _reap_loop(self) -> None:
        """One thread sees every task's process end (a pidfd each) and enforces max_completion_time."""
        poller = select.poll()
        poller.register(self._wake_reader, select.POLLIN)
        registered: set[int] = set()
        while not self._stopping.is_set():
            watched = dict(self._watched)
            for fd in watched.keys() - registered:
                poller.register(fd, select.POLLIN)
                registered.add(fd)
            now = time.monotonic()
            deadlines = [deadline for task, deadline in watched.values() if deadline is not None and not task.timed_out]
            timeout = max(0.0, min(deadlines) - now) if deadlines else 0.2
            for fd, _ in poller.poll(timeout * 1000):
                if fd == self._wake_reader:
                    os.read(fd, 4096)
                    continue
                task, _ = watched[fd]
                poller.unregister(fd)
                registered.discard(fd)
                del self._watched[fd]
                os.close(fd)
                assert task.process is not None
                self._ended(task, task.process.wait())
            now = time.monotonic()
            for task, deadline in watched.values():
                if deadline is not None and now >= deadline and not task.timed_out and task.process is not None:
                    task.timed_out = True
                    _signal_group(task.process, signal.SIGKILL)

    def _ended(self, task: _Task, status: int) -> None:
        with self._lock:
            if task.state in TERMINAL:  # removed with its agent
                return
            agent = self._agents[task.agent_id]
            agent.used = _add(agent.used, task.resources, -1)
            message = (
                f"Command exited with status {status}" if status >= 0 else f"Command terminated with signal {signal.strsignal(-status)}"
            )
            if task.timed_out:
                self._agent_update(task, "TASK_FAILED", "REASON_MAX_COMPLETION_TIME_REACHED", message)
            elif task.kill_requested:
                self._agent_update(task, "TASK_KILLED", "", message)
            else:
                self._agent_update(
                    task,
                    "TASK_FINISHED" if status == 0 else "TASK_FAILED",
                    "" if status == 0 else "REASON_COMMAND_EXECUTOR_FAILED",
                    message,
                )

    def _kill(self, framework: _Framework, task_id: str) -> None:
        task = framework.tasks.get(task_id)
        if task is None:
            unknown = _Task(task_id, framework.framework_id, "", "", {})
            self._master_update(unknown, "TASK_LOST", "REASON_RECONCILIATION", "Attempted to kill an unknown task")
            return
        if task.state in TERMINAL or task.kill_requested:
            return
        task.kill_requested = True
        if self._agents[task.agent_id].state == "active" and task.process is not None:
            threading.Thread(target=self._terminate, args=(task.process, task.kill_grace), daemon=True).start()

    def _terminate(self, process: subprocess.Popen[bytes], grace: float) -> None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)

    def _acknowledge(self, framework: _Framework, task_id: str, update_uuid: str) -> None:
        task = framework.tasks.get(task_id)
        if task is None or not task.pending or task.pending[0]["uuid"] != update_uuid:
            return  # a duplicate acknowledgement, as Mesos ignores it
        if task.pending[0]["state"] in self._holding_acks:
            return
        acknowledged = task.pending.popleft()
        task.last_sent = 0.0
        if acknowledged["state"] in TERMINAL and not task.pending:
            del framework.tasks[task_id]  # a terminal update acknowledged: the master forgets the task
        elif task.pending:
            self._forward(task)

    def _reconcile(self, framework: _Framework, task_ids: list[str]) -> None:
        self.reconciled.append(task_ids)
        wanted = task_ids or list(framework.tasks)
        for task_id in wanted:
            task = framework.tasks.get(task_id)
            if task is None:
                unknown = _Task(task_id, framework.framework_id, "", "", {})
                self._master_update(
                    unknown,
                    "TASK_UNKNOWN" if framework.partition_aware else "TASK_LOST",
                    "REASON_RECONCILIATION",
                    "Reconciliation: task is unknown",
                )
            else:
                self._master_update(task, task.master_state, "REASON_RECONCILIATION", "Reconciliation: latest task state")

    def _teardown(self, framework: _Framework) -> None:
        for task in framework.tasks.values():
            if task.process and task.process.poll() is None:
                _signal_group(task.process, signal.SIGKILL)
            if task.state not in TERMINAL and task.agent_id in self._agents:
                self._agents[task.agent_id].used = _add(self._agents[task.agent_id].used, task.resources, -1)
            task.state = "TASK_KILLED"
        self._drop_offers_of(framework)
        if framework.subscription:
            framework.subscription.close()
        del self._frameworks[framework.framework_id]
        self._removed.add(framework.framework_id)

    # ---- status updates (under the lock) -----------------------------------------------------

    def _agent_update(self, task: _Task, state: str, reason: str, message: str) -> None:
        """An update from the task's agent: reliable, in order, resent until acknowledged."""
        task.state = state
        self._agents[task.agent_id].http.task_state(task.task_id, state, state in TERMINAL)
        if self._agents[task.agent_id].state == "active":
            task.master_state = state
        status = self._status(task, state, reason, message, "SOURCE_EXECUTOR")
        status["uuid"] = base64.b64encode(uuid.uuid4().bytes).decode()
        task.pending.append(status)
        if len(task.pending) == 1:
            self._forward(task)

    def _forward(self, task: _Task) -> None:
        framework = self._frameworks.get(task.framework_id)
        if framework is None or framework.subscription is None or not task.pending or self._holding_updates:
            return
        if self._agents[task.agent_id].state != "active":
            return  # held by the partitioned agent until it is back
        status = task.pending[0]
        framework.subscription.send({"type": "UPDATE", "update": {"status": status}})
        self.deliveries[(task.task_id, status["state"])] += 1
        task.last_sent = time.monotonic()

    def _master_update(self, task: _Task, state: str, reason: str, message: str) -> None:
        framework = self._frameworks.get(task.framework_id)
        if framework is not None and framework.subscription is not None:
            framework.subscription.send(
                {"type": "UPDATE", "update": {"status": self._status(task, state, reason, message, "SOURCE_MASTER")}}
            )

    def _status(self, task: _Task, state: str, reason: str, message: str, source: str) -> dict[str, Any]:
        status: dict[str, Any] = {
            "task_id": {"value": task.task_id},
            "state": state,
            "source": source,
            "timestamp": time.time(),
            "message": message,
        }
        if task.agent_id:
            status["agent_id"] = {"value": task.agent_id}
        if reason:
            status["reason"] = reason
        return status

    # ---- offers (under the lock) -------------------------------------------------------------

    def _allocate(self) -> None:
        """Offer what is free: every allocation_interval (a batch, as Mesos' allocator does), and
        at once when a framework subscribes or revives or an agent comes back."""
        now = self._allocated_at = time.monotonic()
        for framework in self._frameworks.values():
            if framework.subscription is None or framework.suppressed:
                continue
            offers = []
            for agent in self._agents.values():
                if agent.state != "active":
                    continue
                free = agent.free()
                until, refused = framework.filters.get(agent.agent_id, (0.0, {}))
                if until > now and _fits(free, refused):
                    continue
                if free.get("cpus", 0) < 0.01 and free.get("mem", 0) < 32:
                    continue  # Mesos' smallest allocatable amount
                free = {name: value for name, value in free.items() if value > 0}
                offer = _Offer(f"{self.master_id}-O{next(self._ids)}", framework.framework_id, agent.agent_id, free, now)
                self._offers[offer.offer_id] = offer
                agent.offered = _add(agent.offered, free)
                offers.append(
                    {
                        "id": {"value": offer.offer_id},
                        "framework_id": {"value": framework.framework_id},
                        "agent_id": {"value": agent.agent_id},
                        "hostname": agent.spec.hostname,
                        "allocation_info": {"role": framework.role},
                        "resources": resources_json(free, framework.role),
                        "attributes": agent.info()["attributes"],
                    }
                )
            if offers:
                framework.subscription.send({"type": "OFFERS", "offers": offers})

    def _return_offer(self, framework: _Framework, offer: _Offer, resources: Resources, filters: dict[str, Any] | None) -> None:
        agent = self._agents[offer.agent_id]
        agent.offered = _add(agent.offered, resources, -1)
        self._filter(framework, offer.agent_id, filters, resources)

    def _filter(self, framework: _Framework, agent_id: str, filters: dict[str, Any] | None, refused: Resources) -> None:
        seconds = float((filters or {}).get("refuse_seconds", DEFAULT_REFUSE_SECONDS))
        if seconds > 0:
            framework.filters[agent_id] = (time.monotonic() + seconds, refused)

    def _rescind_offers_on(self, agent_id: str) -> None:
        for offer in [offer for offer in self._offers.values() if offer.agent_id == agent_id]:
            del self._offers[offer.offer_id]
            self._agents[agent_id].offered = _add(self._agents[agent_id].offered, offer.resources, -1)
            framework = self._frameworks.get(offer.framework_id)
            if framework and framework.subscription:
                framework.subscription.send({"type": "RESCIND", "rescind": {"offer_id": {"value": offer.offer_id}}})

    def _drop_offers_of(self, framework: _Framework) -> None:
        for offer in [offer for offer in self._offers.values() if offer.framework_id == framework.framework_id]:
            del self._offers[offer.offer_id]
            self._agents[offer.agent_id].offered = _add(self._agents[offer.agent_id].offered, offer.resources, -1)

    # ---- time --------------------------------------------------------------------------------

    def _clock(self) -> None:
        """Resend unacknowledged updates, lift expired filters, end frameworks past failover."""
        while not self._stopping.wait(TICK):
            now = time.monotonic()
            with self._lock:
                for task in list(self._all_tasks()):
                    if task.pending and task.last_sent and now - task.last_sent >= self.resend_interval:
                        self._forward(task)
                    elif task.pending and not task.last_sent:
                        self._forward(task)
                for framework in list(self._frameworks.values()):
                    timeout = float(framework.info.get("failover_timeout", 0))
                    if framework.disconnected_at is not None and now - framework.disconnected_at > timeout:
                        self._teardown(framework)
                    else:
                        framework.filters = {agent: kept for agent, kept in framework.filters.items() if kept[0] > now}
                if now - self._allocated_at >= self.allocation_interval:
                    self._allocate()

    def _all_tasks(self) -> Iterator[_Task]:
        for framework in list(self._frameworks.values()):
            yield from list(framework.tasks.values())

    def _task(self, task_id: str) -> _Task:
        for task in self._all_tasks():
            if task.task_id == task_id:
                return task
        raise KeyError(task_id)


def _signal_group(process: subprocess.Popen[bytes], signal_number: int) -> None:
    try:
        os.killpg(process.pid, signal_number)
    except ProcessLookupError:
        pass


def _peer_closed(handler: BaseHTTPRequestHandler) -> bool:
    readable, _, _ = select.select([handler.connection], [], [], 0)
    if not readable:
        return False
    try:
        return handler.connection.recv(1, 0x40 | 0x2) == b""  # MSG_DONTWAIT | MSG_PEEK
    except BlockingIOError:
        return False
    except OSError:
        return True
