"""The Mesos backend: batchgate as a Mesos framework on the v1 scheduler HTTP API.

Jobs wait in issue order until an offer has room; each offer takes, first fit, every waiting job
that fits what is left of it, skipping those that do not (a big job never holds small ones
back), and is ACCEPTed with their LAUNCH or DECLINEd with a refuse filter. New jobs REVIVE the
filters. Every status update with a uuid is ACKNOWLEDGEd; a terminal one only once the kit has
committed the job's end (a checkpoint written after the report, read back from the store), so a
crash in between leaves Mesos resending it rather than the end lost.

The framework id Mesos gives is kept in a file in the service's state directory (the kit's
checkpoints hold integers only), so a restarted service subscribes again as the same framework
and RECONCILEs its tasks instead of launching them again: a task Mesos has never heard of
(TASK_UNKNOWN) and that never started is launched; any other answer is followed. Tasks of the
framework that no live job owns (given up while their agent was unreachable, say) are killed.

A task whose agent is unreachable is reconciled every second; if it is not back within
`unreachable_timeout`, the job is reported LOST once, and the task is killed should it come back.

A job's output stays where Mesos puts it, in its task's sandbox: `output` reads it through the
agent's `/state` and files API (sandbox.py).
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchgate.driver import AcceleratorRequest, Driver, Ending, Job, JobEvents, Limits, SchedulingStatus, SubmittedJob, Verdict
from batchgate.errors import InsufficientSystemResources, InvalidArgument, NoOutput, SchedulerError, UnknownNode
from batchgate.v1 import batchgate_pb2 as pb

from .api import MesosError, SchedulerConnection, error_message, master_url
from .sandbox import AgentError, AgentFiles, NotYet, OutputFile, Sandbox, SandboxOutput, executor_directory, virtual_path
from .tasks import (
    MIB,
    TERMINAL,
    Agent,
    Amounts,
    agent_address,
    attributes_of,
    ending_of,
    job_attributes,
    job_role,
    task_info,
    wants_placement,
)

log = logging.getLogger(__name__)

ENDS_CHECKPOINT = "mesos.ends"  # the count of terminal updates reported; acknowledged up to the committed one
AGENTS_REFRESH = 2.0
UNREACHABLE_RECONCILE = 1.0
# After a restart the kit submits again the jobs whose launch an earlier run had not recorded
# (it crashed in between): for this long, a submitted job is first looked up by its task id.
RECOVERY_SECONDS = 30.0
NEVER_LAUNCHED = frozenset({"TASK_UNKNOWN", "TASK_DROPPED"})  # Mesos' answer for a task id it never had
RECONCILE_ALL = 60.0  # an implicit reconciliation now and then, as Mesos advises: finds orphans
KILL_RESEND = 2.0
MAX_LAUNCH_ATTEMPTS = 3  # a job whose launch Mesos drops this often is reported LOST
QUOTE_TIMEOUT = 1.0  # seconds per request to an agent while an end is being reported
REMEMBERED_TASKS = 100_000  # the agents of tasks seen, for their output once they have ended


@dataclass
class _Task:
    job: Job
    task_id: str
    agent_id: str = ""
    running_since: float | None = None  # epoch seconds (the status's timestamp)
    adopted: bool = False  # from an earlier run, not reconciled yet
    unreachable_since: float | None = None  # monotonic


@dataclass(frozen=True)
class MesosSettings:
    master: str
    roles: tuple[str, ...] = ("*",)
    framework_name: str = "batchgate"
    user: str = ""
    principal: str = ""
    secret: str = ""
    checkpoint: bool = True
    failover_timeout: float = 7 * 86400.0
    refuse_seconds: float = 5.0
    unreachable_timeout: float = 60.0
    kill_timeout: float = 60.0
    kill_grace: float = 3.0


class MesosDriver(Driver):
    kind = "mesos"
    options_field = "mesos"
    keeps_output = True  # in each task's sandbox, read through its agent's files API

    def __init__(self, settings: MesosSettings, framework_id_path: Path) -> None:
        self.settings = settings
        self.framework_id_path = framework_id_path
        self._lock = threading.Lock()
        self._waiting: dict[int, Job] = {}  # by job id, in issue order
        self._tasks: dict[int, _Task] = {}  # launched (or adopted), by job id
        self._given_up: dict[str, str] = {}  # task id -> agent id: reported LOST while perhaps alive
        self._kill_waiters: dict[str, threading.Event] = {}  # task id -> set once it is dead
        self._checking: dict[int, Job] = {}  # submitted after a restart, asked of Mesos before a launch
        self._check_until = 0.0  # monotonic end of the recovery window
        self._ignored: set[str] = set()
        self._agents: list[Agent] | None = None
        self._agents_at = 0.0
        self._filters_set = False  # DECLINEd or refused since the last REVIVE
        self._started = False
        self._launch_attempts: dict[int, int] = {}  # by job id, for jobs launched again
        self._ran_on: dict[str, str] = {}  # task id -> agent id, oldest first (REMEMBERED_TASKS), for output
        self._remembering = threading.Lock()  # its own: output() takes no other
        self._ends_reported = 0
        self._acks_waiting: collections.deque[tuple[int, dict[str, Any]]] = collections.deque()
        self._acks_ready = threading.Condition()
        self._stopping = threading.Event()
        auth = (settings.principal, settings.secret) if settings.principal else None
        self.connection = SchedulerConnection(
            master_url(settings.master), self._subscribe_body, self._on_event, self._on_disconnect, self._on_unheard, auth=auth
        )
        # Agents take the same credentials as the master, when their HTTP authentication is on.
        credentials = {k: v for k, v in self.connection.headers.items() if k.lower() == "authorization"}
        self._agent_files = AgentFiles(credentials)
        # For the kit's quote of a failed job's stderr, made in this driver's thread as the end
        # is reported: a slow agent must not hold the event stream (the quote is then left out).
        self._quoting_files = AgentFiles(credentials, connect_timeout=QUOTE_TIMEOUT, read_timeout=QUOTE_TIMEOUT)
        self._reporting = threading.local()  # .ending: True while this thread reports an end

    # ---- Driver ------------------------------------------------------------------------------

    def attach(self, events: JobEvents, instance_id: str) -> None:
        super().attach(events, instance_id)
        self._ends_reported = events.checkpoints().get(ENDS_CHECKPOINT, 0)
        if self._load_framework_id():  # a restart: some jobs submitted now may run already
            self._check_until = time.monotonic() + RECOVERY_SECONDS
        for target, name in ((self._timer_loop, "mesos-timer"), (self._durable_ack_loop, "mesos-durable-acks")):
            threading.Thread(target=target, name=name, daemon=True).start()

    def limits(self) -> Limits:
        agents = self._known_agents()
        if not agents:
            return Limits()  # none known yet: jobs wait for agents rather than being refused
        gpus = max(agent.total.gpus for agent in agents)
        return Limits(
            max_cores=max(agent.total.cpus for agent in agents),
            max_memory=int(max(agent.total.mem for agent in agents) * MIB),
            max_disk=int(max(agent.total.disk for agent in agents) * MIB),
            accelerators=(AcceleratorRequest(count=int(gpus), kind="gpu"),) if gpus else (),
        )

    def validate(self, job: Job) -> None:
        role = job_role(job, self.settings.roles[0])
        if role not in self.settings.roles:
            raise InvalidArgument("mesos.role", f"this framework subscribes with roles {list(self.settings.roles)}; not {role!r}")
        agents = self._known_agents()
        if not agents:
            return
        placed = [agent for agent in agents if wants_placement(job, agent.attributes)]
        if not placed:
            wanted = ", ".join(f"{name}={value}" for name, value in job_attributes(job).items())
            raise InsufficientSystemResources(
                "attributes", 1, 0, self.name, details=f"no agent of backend {self.name!r} has the attributes {wanted}"
            )
        need = Amounts.of_job(job)
        if any(need.fits(agent.total) for agent in placed):
            return
        # Each resource fits some agent (the kit checked), but no one agent has all of them.
        largest = max(placed, key=lambda agent: (agent.total.cpus, agent.total.mem))
        resource, asked, had = need.shortfall(largest.total) or ("cores", need.cpus, largest.total.cpus)
        raise InsufficientSystemResources(
            resource,
            asked,
            had,
            self.name,
            details=f"no single agent of {self.name!r} has room for the whole job ({resource} on the largest: {had:g} of {asked:g})",
        )

    def submit(self, jobs: Sequence[Job]) -> Sequence[str]:
        with self._lock:
            checking = time.monotonic() < self._check_until
            for job in jobs:
                if checking:
                    self._checking[job.job_id] = job
                else:
                    self._waiting[job.job_id] = job
            self._start()
            if checking and self.connection.connected.is_set():
                self._reconcile([(self._task_id(job.job_id), "") for job in jobs])
            if self._filters_set and self.connection.connected.is_set():
                self._filters_set = False
                self.connection.send({"type": "REVIVE"})
        return [""] * len(jobs)  # the task id becomes the backing id when it runs

    def adopt(self, jobs: Sequence[SubmittedJob]) -> None:
        with self._lock:
            for submitted in jobs:
                job = submitted.job
                task_id = submitted.backing_id or self._task_id(job.job_id)
                self._tasks[job.job_id] = _Task(job, task_id, running_since=submitted.started_at, adopted=True)
            self._start()
            if self.connection.connected.is_set():
                self._reconcile([(self._tasks[s.job.job_id].task_id, "") for s in jobs])

    def kill(self, jobs: Sequence[SubmittedJob]) -> None:
        dying: dict[str, tuple[threading.Event, str]] = {}
        with self._lock:
            for submitted in jobs:
                job_id = submitted.job.job_id
                if self._waiting.pop(job_id, None) is not None:
                    continue  # never launched: nothing to kill
                self._checking.pop(job_id, None)  # perhaps launched by an earlier run: kill its task
                task = self._tasks.pop(job_id, None)
                task_id = task.task_id if task else submitted.backing_id or self._task_id(job_id)
                dying[task_id] = (self._kill_waiters.setdefault(task_id, threading.Event()), task.agent_id if task else "")
            if dying:
                self._start()
        deadline = time.monotonic() + self.settings.kill_timeout
        try:
            while dying:
                for task_id, (_, agent_id) in dying.items():
                    kill: dict[str, Any] = {"task_id": {"value": task_id}}
                    if agent_id:
                        kill["agent_id"] = {"value": agent_id}
                    self.connection.send({"type": "KILL", "kill": kill}, agent_id)
                resend_at = min(deadline, time.monotonic() + KILL_RESEND)
                for task_id, (dead, _) in list(dying.items()):
                    if dead.wait(max(0.0, resend_at - time.monotonic())):
                        del dying[task_id]
                if dying and time.monotonic() >= deadline:
                    # Kept by the kit, and made again after a restart.
                    raise SchedulerError(
                        self.name, f"mesos did not confirm the kill of task(s) {sorted(dying)} within {self.settings.kill_timeout:g} s"
                    )
        finally:
            with self._lock:
                for task_id in [task_id for task_id, event in self._kill_waiters.items() if event.is_set() or task_id in dying]:
                    self._kill_waiters.pop(task_id, None)

    def scheduling_status(self) -> SchedulingStatus:
        agents = [agent for agent in self._known_agents() if not self._is_ignored(agent.hostname, agent.agent_id)]
        with self._lock:
            waiting = list(self._waiting.values())
            running = len(self._tasks)
        if not waiting:
            return SchedulingStatus(f"{running} task(s) running in mesos, none waiting")
        never = sum(
            1 for job in waiting if not any(Amounts.of_job(job).fits(a.total) and wants_placement(job, a.attributes) for a in agents)
        )
        message = f"{running} task(s) running in mesos; {len(waiting)} job(s) waiting for offers"
        if never:
            message += f" ({never} fit no agent that is not ignored)"
        return SchedulingStatus(message, deadlocked=bool(agents) and never == len(waiting) and running == 0)

    def nodes(self) -> list[pb.Node]:
        with self._lock:
            ours = collections.Counter(task.agent_id for task in self._tasks.values())
        return [
            pb.Node(
                name=agent.hostname,
                state="ignored" if self._is_ignored(agent.hostname, agent.agent_id) else "active",
                cores=agent.total.cpus,
                cores_used=agent.used.cpus,
                memory=int(agent.total.mem * MIB),
                memory_used=int(agent.used.mem * MIB),
                accelerators=[pb.Accelerator(count=int(agent.total.gpus), kind="gpu")] if agent.total.gpus else [],
                running_jobs=ours.get(agent.agent_id, 0),
                backend=self.name,
            )
            for agent in self._known_agents()
        ]

    def node_types(self) -> list[pb.NodeType]:
        shapes = collections.Counter(agent.total for agent in self._known_agents())
        return [
            pb.NodeType(
                cores=shape.cpus,
                memory=int(shape.mem * MIB),
                disk=int(shape.disk * MIB),
                accelerators=[pb.Accelerator(count=int(shape.gpus), kind="gpu")] if shape.gpus else [],
                count=count,
                backend=self.name,
            )
            for shape, count in shapes.items()
        ]

    def close(self) -> Sequence[int]:
        self._stopping.set()
        with self._acks_ready:
            self._acks_ready.notify_all()
        self.connection.close()
        return ()  # tasks run on under Mesos; the next run re-subscribes and reconciles them

    # ---- job output: the task's sandbox, through its agent ------------------------------------

    def output(self, job: SubmittedJob, stream: int, tail_bytes: int, follow: bool) -> SandboxOutput:
        """Read from the sandbox on the task's agent. Called by the kit in this driver's own
        thread too (a failed job's stderr, as its end is reported, with the lock held): so it
        takes no lock, only reading dicts whole."""
        spec = job.job
        stderr = stream == pb.OUTPUT_STREAM_STDERR
        output = OutputFile("stderr" if stderr else "stdout", spec.stderr_path if stderr else spec.stdout_path, spec.working_directory)
        task_id = job.backing_id or self._task_id(spec.job_id)
        files = self._quoting_files if getattr(self._reporting, "ending", False) else self._agent_files
        return SandboxOutput(
            spec.job_id,
            files,
            output,
            lambda: self._sandbox(spec.job_id, task_id, files),
            lambda: self._is_live(spec.job_id),
            tail_bytes=tail_bytes,
            follow=follow,
        )

    def _is_live(self, job_id: int) -> bool:
        return job_id in self._tasks or job_id in self._waiting or job_id in self._checking

    def _sandbox(self, job_id: int, task_id: str, files: AgentFiles) -> Sandbox:
        """Where the task ran: its agent from what this run saw, else (a task of an earlier run)
        from the agents' own state. Raises NotYet, NoOutput, AgentError."""
        task = self._tasks.get(job_id)
        live = self._is_live(job_id)
        agent_id = task.agent_id if task is not None and task.task_id == task_id else self._ran_on.get(task_id, "")
        if not agent_id:
            if live:
                raise NotYet("it has not been launched in mesos yet")
            found = self._search_agents(task_id, files)
            if found is None:
                raise NoOutput(job_id, f"no mesos agent lists its task {task_id} any more (its sandbox has been garbage-collected)")
            return found
        agent = self._agent(agent_id)
        if agent is None:
            # Not asked: an unreachable agent would hold the caller (the end's report) for its timeout.
            raise NoOutput(job_id, f"the agent its task ran on ({agent_id}) is not among the master's agents (unreachable or removed)")
        try:
            directory = executor_directory(files.state(agent.address), task_id)
        except AgentError:
            if self._agent(agent_id, fresh=True) is None:  # gone since the agents were last listed
                raise NoOutput(job_id, f"agent {agent.hostname}, where its task ran, is no longer among the master's agents") from None
            raise
        if directory is None:
            if live:
                raise NotYet(f"its task has not started on agent {agent.hostname} yet")
            # The agent lists only its latest completed executors; an older one's sandbox stays
            # served under its virtual path until it is garbage-collected.
            framework_id = self.connection.framework_id or self._load_framework_id()
            directory = virtual_path(framework_id, task_id)
        return Sandbox(agent.agent_id, agent.hostname, agent.address, directory)

    def _agent(self, agent_id: str, *, fresh: bool = False) -> Agent | None:
        """The agent from the list the master gave last, or (not there, or asked `fresh`) now."""
        if not fresh:
            agent = next((agent for agent in self._known_agents() if agent.agent_id == agent_id), None)
            if agent is not None:
                return agent
        return next((agent for agent in self._known_agents(fresh=True) if agent.agent_id == agent_id), None)

    def _search_agents(self, task_id: str, files: AgentFiles) -> Sandbox | None:
        for agent in self._known_agents(fresh=True):
            try:
                directory = executor_directory(files.state(agent.address), task_id)
            except AgentError as error:
                log.warning("looking for task %s's sandbox: %s", task_id, error)
                continue
            if directory is not None:
                self._remember(self._ran_on, task_id, agent.agent_id)
                return Sandbox(agent.agent_id, agent.hostname, agent.address, directory)
        return None

    def _remember(self, memory: dict[str, str], task_id: str, value: str) -> None:
        if value and memory.get(task_id) != value:
            with self._remembering:
                memory[task_id] = value
                while len(memory) > REMEMBERED_TASKS:
                    memory.pop(next(iter(memory)))

    # ---- nodes an operator ignores (running tasks finish) ------------------------------------

    def ignore_node(self, name: str, ignored: bool, backend: str = "") -> None:
        """Decline offers from the agent with this hostname (or id) while it is ignored."""
        self._agents_named(name)
        with self._lock:
            if ignored:
                self._ignored.add(name)
            else:
                self._ignored.discard(name)
                if self._filters_set and self.connection.connected.is_set():
                    self._filters_set = False
                    self.connection.send({"type": "REVIVE"})  # its offers were declined meanwhile

    def node_in_use(self, name: str, backend: str = "") -> int:
        ids = {agent.agent_id for agent in self._agents_named(name)}
        with self._lock:
            return sum(1 for task in self._tasks.values() if task.agent_id in ids)

    def _agents_named(self, name: str) -> list[Agent]:
        agents = [agent for agent in self._known_agents(fresh=True) if name in (agent.hostname, agent.agent_id)]
        if not agents:
            raise UnknownNode(self.name, name)
        return agents

    def _is_ignored(self, hostname: str, agent_id: str) -> bool:
        return hostname in self._ignored or agent_id in self._ignored

    # ---- the subscription --------------------------------------------------------------------

    def _start(self) -> None:
        """Subscribe on first need (called with the lock held): by then the kit has handed back
        every job an earlier run left, so a task no job owns really is an orphan."""
        if not self._started:
            self._started = True
            self.connection.start()

    def _subscribe_body(self) -> dict[str, Any]:
        settings = self.settings
        info: dict[str, Any] = {
            "user": settings.user or _current_user(),
            "name": settings.framework_name,
            "roles": list(settings.roles),
            "hostname": socket.gethostname(),
            "failover_timeout": settings.failover_timeout,
            "checkpoint": settings.checkpoint,
            "capabilities": [{"type": "MULTI_ROLE"}, {"type": "PARTITION_AWARE"}, {"type": "GPU_RESOURCES"}],
        }
        if settings.principal:
            info["principal"] = settings.principal
        framework_id = self._load_framework_id()
        if framework_id:
            info["id"] = {"value": framework_id}
        return {"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}

    def _on_disconnect(self) -> None:
        log.warning("lost the mesos subscription; subscribing again")

    def _on_unheard(self, call: dict[str, Any]) -> None:
        """An ACCEPT the master never acted on: its jobs wait for another offer."""
        if call.get("type") != "ACCEPT":
            return  # other calls are made again: KILL, by kill(); the rest after SUBSCRIBED
        with self._lock:
            for operation in call["accept"].get("operations", []):
                for info in operation.get("launch", {}).get("task_infos", []):
                    self._relaunch(info["task_id"]["value"], counted=False)  # always safe: never seen

    def _relaunch(self, task_id: str, counted: bool = True) -> bool:
        """Put a task's job back to wait for an offer, if it has never run (lock held). Counted
        relaunches (Mesos dropped the launch) stop after MAX_LAUNCH_ATTEMPTS."""
        job_id = self._job_id_of(task_id)
        task = self._tasks.get(job_id) if job_id is not None else None
        if task is None or task.task_id != task_id or task.running_since is not None:
            return False
        if counted:
            self._launch_attempts[task.job.job_id] = self._launch_attempts.get(task.job.job_id, 0) + 1
            if self._launch_attempts[task.job.job_id] >= MAX_LAUNCH_ATTEMPTS:
                return False
        del self._tasks[task.job.job_id]
        self._waiting = {task.job.job_id: task.job, **self._waiting}
        self._filters_set = False
        self.connection.send({"type": "REVIVE"})
        return True

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "SUBSCRIBED":
            self._subscribed(event["subscribed"]["framework_id"]["value"])
        elif kind == "OFFERS":
            self._offers(event["offers"])
        elif kind == "UPDATE":
            self._update(event["update"]["status"])
        elif kind == "FAILURE":
            log.warning("mesos reports a failure: %s", event.get("failure"))
        elif kind == "RESCIND":
            pass  # offers are answered as they come; a rescinded one was already answered
        elif kind == "ERROR" and "removed" in error_message(event):
            # Mesos ended the framework (it was away past its failover timeout, or torn down): it
            # never comes back. Subscribe as a new one; reconciliation then finds its tasks gone.
            log.error("mesos removed framework %s; subscribing as a new framework", self._load_framework_id())
            self.framework_id_path.unlink(missing_ok=True)

    def _subscribed(self, framework_id: str) -> None:
        if framework_id != self._load_framework_id():
            _write_atomically(self.framework_id_path, framework_id)
        log.info("subscribed to mesos as framework %s", framework_id)
        with self._lock:
            # By id: tasks of an earlier run, and those seen running. (A task launched but not yet
            # seen running may have its ACCEPT still on the way; the implicit reconciliation
            # below answers for it if Mesos has it.)
            known = [(task.task_id, task.agent_id) for task in self._tasks.values() if task.adopted or task.running_since is not None]
            checking = [(self._task_id(job_id), "") for job_id in self._checking]
            self._reconcile(known + list(self._given_up.items()) + checking)
            self.connection.send({"type": "RECONCILE", "reconcile": {"tasks": []}})  # every task Mesos has of ours: orphans
            self._filters_set = False
            self.connection.send({"type": "REVIVE"})

    def _reconcile(self, tasks: list[tuple[str, str]]) -> None:
        """Ask for the latest state of tasks (task id, agent id if known)."""
        if tasks:
            items = [
                {"task_id": {"value": task_id}, **({"agent_id": {"value": agent_id}} if agent_id else {})} for task_id, agent_id in tasks
            ]
            self.connection.send({"type": "RECONCILE", "reconcile": {"tasks": items}})

    # ---- offers ------------------------------------------------------------------------------

    def _offers(self, offers: list[dict[str, Any]]) -> None:
        with self._lock:
            for offer in offers:
                launches = self._fill(offer)
                call: dict[str, Any]
                refuse = {"refuse_seconds": self.settings.refuse_seconds}
                if launches:
                    operations = [{"type": "LAUNCH", "launch": {"task_infos": launches}}]
                    call = {"type": "ACCEPT", "accept": {"offer_ids": [offer["id"]], "operations": operations, "filters": refuse}}
                else:
                    call = {"type": "DECLINE", "decline": {"offer_ids": [offer["id"]], "filters": refuse}}
                self._filters_set = True  # what is left of it is refused for a while
                self.connection.send(call, offer["agent_id"]["value"])

    def _fill(self, offer: dict[str, Any]) -> list[dict[str, Any]]:
        """First fit: the waiting jobs, in issue order, that fit what is left of the offer."""
        agent_id = offer["agent_id"]["value"]
        if self._is_ignored(offer.get("hostname", ""), agent_id) or not self._waiting:
            return []
        role = offer.get("allocation_info", {}).get("role", self.settings.roles[0])
        attributes = attributes_of(offer.get("attributes", []))
        free = Amounts.parse(offer.get("resources", []))
        launches = []
        for job in list(self._waiting.values()):
            need = Amounts.of_job(job)
            if job_role(job, self.settings.roles[0]) != role or not need.fits(free) or not wants_placement(job, attributes):
                continue
            free = free.minus(need)
            del self._waiting[job.job_id]
            task = _Task(job, self._task_id(job.job_id), agent_id)
            self._tasks[job.job_id] = task
            self._remember(self._ran_on, task.task_id, agent_id)
            launches.append(task_info(job, task.task_id, agent_id, role, self.settings.kill_grace))
            if free.cpus < 0.01 and free.mem < 1:
                break
        return launches

    # ---- status updates ----------------------------------------------------------------------

    def _update(self, status: dict[str, Any]) -> None:
        task_id = status["task_id"]["value"]
        state = status["state"]
        update_uuid = status.get("uuid")
        durable = False
        with self._lock:
            job_id = self._job_id_of(task_id)
            if job_id is not None and job_id in self._checking:
                self._recovered(self._checking.pop(job_id), task_id, status)
            task = self._tasks.get(job_id) if job_id is not None else None
            if task is not None and task.task_id != task_id:
                task = None
            if task_id in self._kill_waiters:
                if state in TERMINAL or state == "TASK_UNKNOWN":
                    self._kill_waiters[task_id].set()
            elif task is None:
                if state in TERMINAL or state == "TASK_UNKNOWN":
                    self._given_up.pop(task_id, None)
                elif state != "TASK_UNREACHABLE":
                    log.info("killing mesos task %s, which no live job owns", task_id)
                    agent = status.get("agent_id", {})
                    self.connection.send(
                        {"type": "KILL", "kill": {"task_id": {"value": task_id}, "agent_id": agent}}, agent.get("value", "")
                    )
            else:
                if status.get("agent_id"):
                    task.agent_id = status["agent_id"]["value"]
                    self._remember(self._ran_on, task_id, task.agent_id)
                durable = self._follow(task, status)
        if update_uuid:
            acknowledge = {
                "type": "ACKNOWLEDGE",
                "acknowledge": {"agent_id": status.get("agent_id", {}), "task_id": {"value": task_id}, "uuid": update_uuid},
            }
            if durable:
                with self._acks_ready:
                    self._acks_waiting.append((self._ends_reported, acknowledge))
                    self._acks_ready.notify()
            else:
                self.connection.acknowledge(acknowledge)

    def _recovered(self, job: Job, task_id: str, status: dict[str, Any]) -> None:
        """What Mesos says of a job submitted after a restart (lock held): a task it does not
        know was never launched, so the job waits for an offer; any other is followed."""
        if status["state"] in NEVER_LAUNCHED:
            self._waiting[job.job_id] = job
            if self._filters_set and self.connection.connected.is_set():
                self._filters_set = False
                self.connection.send({"type": "REVIVE"})
        else:
            log.info("mesos task %s was launched by an earlier run: following it, not launching it again", task_id)
            self._tasks[job.job_id] = _Task(job, task_id, status.get("agent_id", {}).get("value", ""), adopted=True)

    def _follow(self, task: _Task, status: dict[str, Any]) -> bool:
        """Act on a status of a task a live job owns (lock held); True when its end was reported."""
        state = status["state"]
        job_id = task.job.job_id
        if state in TERMINAL:
            if status.get("reason") == "REASON_RECONCILIATION" and state in ("TASK_FAILED", "TASK_KILLED"):
                return False  # the master's answer lacks the command's exit status; the agent resends its own update
            if state == "TASK_DROPPED" and self._relaunch(task.task_id):
                return False  # never started, "attempting to launch the task again may be successful"
            del self._tasks[job_id]
            wall_time = status["timestamp"] - task.running_since if task.running_since and status.get("timestamp") else None
            self._report_end(job_id, ending_of(status, wall_time, task.job))
            return True
        if state == "TASK_UNKNOWN":
            # An earlier run's task Mesos never had (its ACCEPT lost with the crash, or never
            # made): launched now, for the first time. (One of this run's may have its ACCEPT
            # still on the way: not relaunched on this answer.)
            if not (task.adopted and self._relaunch(task.task_id)):
                del self._tasks[job_id]
                self._report_end(job_id, Ending(Verdict.VANISHED, message=f"mesos no longer knows task {task.task_id}"))
                return True
            return False
        task.adopted = False
        if state == "TASK_UNREACHABLE":
            task.unreachable_since = task.unreachable_since or time.monotonic()
            return False
        task.unreachable_since = None
        if state == "TASK_RUNNING" and task.running_since is None:
            task.running_since = float(status.get("timestamp") or time.time())
            self.events.started(job_id, backing_id=task.task_id, at=task.running_since)
        return False

    def _report_end(self, job_id: int, ending: Ending) -> None:
        self._reporting.ending = True
        try:
            self.events.ended(job_id, ending)
        finally:
            self._reporting.ending = False
        self._ends_reported += 1
        self.events.checkpoint(ENDS_CHECKPOINT, self._ends_reported)

    def _durable_ack_loop(self) -> None:
        """Acknowledge terminal updates once the ends reported before them are committed."""
        while not self._stopping.is_set():
            with self._acks_ready:
                self._acks_ready.wait_for(lambda: self._acks_waiting or self._stopping.is_set())
            try:
                committed = self.events.checkpoints().get(ENDS_CHECKPOINT, 0)
            except Exception:  # the store closing under a shutdown: Mesos resends what is unacknowledged
                return
            with self._acks_ready:
                while self._acks_waiting and self._acks_waiting[0][0] <= committed:
                    self.connection.acknowledge(self._acks_waiting.popleft()[1])
                more = bool(self._acks_waiting)
            if more:
                self._stopping.wait(0.005)

    # ---- time --------------------------------------------------------------------------------

    def _timer_loop(self) -> None:
        last_reconcile = last_reconcile_all = time.monotonic()
        while not self._stopping.wait(0.2):
            now = time.monotonic()
            if now - last_reconcile_all >= RECONCILE_ALL and self.connection.connected.is_set():
                last_reconcile_all = now
                self.connection.send({"type": "RECONCILE", "reconcile": {"tasks": []}})
            with self._lock:
                unreachable = [task for task in self._tasks.values() if task.unreachable_since is not None]
                for task in unreachable:
                    if now - task.unreachable_since >= self.settings.unreachable_timeout:  # type: ignore[operator]
                        del self._tasks[task.job.job_id]
                        self._given_up[task.task_id] = task.agent_id
                        status = {
                            "state": "TASK_UNREACHABLE",
                            "message": f"agent {task.agent_id} unreachable for {self.settings.unreachable_timeout:g} s",
                        }
                        self._report_end(task.job.job_id, ending_of(status, None, task.job))
                # Mesos does not say when a partitioned agent is back: ask, for the tasks waited
                # for and those given up (to kill them if they run again).
                if (unreachable or self._given_up) and now - last_reconcile >= UNREACHABLE_RECONCILE and self.connection.connected.is_set():
                    last_reconcile = now
                    asked = [(task.task_id, task.agent_id) for task in unreachable if task.job.job_id in self._tasks]
                    self._reconcile(asked + list(self._given_up.items()))
            if now - self._agents_at >= AGENTS_REFRESH:
                self._known_agents(fresh=True)

    def _known_agents(self, fresh: bool = False) -> list[Agent]:
        """Agents from the operator API's GET_AGENTS: fetched on the first call and when asked
        `fresh`; the timer thread refreshes them every AGENTS_REFRESH seconds, so an IssueJob
        never waits on the master."""
        if fresh or self._agents is None:
            self._agents_at = time.monotonic()
            try:
                answer = self.connection.operator({"type": "GET_AGENTS"})
            except MesosError as error:
                log.warning("could not list mesos agents: %s", error)
                if self._agents is None:
                    self._agents = []  # none known: jobs are taken and wait; the timer asks again
                return self._agents
            agents = []
            for item in answer.get("get_agents", {}).get("agents", []):
                info = item["agent_info"]
                total = Amounts.parse(item.get("total_resources") or info.get("resources", []))
                # allocated_resources holds what tasks use and what is offered.
                used = Amounts.parse(item.get("allocated_resources", [])).minus(Amounts.parse(item.get("offered_resources", [])))
                agents.append(
                    Agent(
                        info["id"]["value"],
                        info.get("hostname", ""),
                        total,
                        used,
                        attributes_of(info.get("attributes", [])),
                        agent_address(item, self.connection.url.partition("://")[0]),
                    )
                )
            self._agents = agents
        return self._agents

    def _task_id(self, job_id: int) -> str:
        return f"batchgate-{self.instance_id}-{job_id}"

    def _job_id_of(self, task_id: str) -> int | None:
        prefix = f"batchgate-{self.instance_id}-"
        suffix = task_id[len(prefix) :] if task_id.startswith(prefix) else ""
        return int(suffix) if suffix.isdigit() else None

    def _load_framework_id(self) -> str:
        try:
            return self.framework_id_path.read_text().strip()
        except FileNotFoundError:
            return ""


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with open(partial, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
