"""Mesos' words for batchgate's: a job as a TaskInfo, an offer or agent as resources, and a
terminal status update as an Ending. Pure data and functions; the driver holds the state."""

from __future__ import annotations

import math
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from batchgate.driver import Ending, Job, Verdict

MIB = 1024**2
ROLE_ANY = "*"

# Terminal task states, and what each says of the job (the kit turns the verdict into the exit
# reason). TASK_FAILED and TASK_KILLED are refined below by the status's reason and message.
VERDICTS: Mapping[str, Verdict] = {
    "TASK_FINISHED": Verdict.EXITED,
    "TASK_FAILED": Verdict.FAILED,
    "TASK_KILLED": Verdict.CANCELLED,  # never reported when it was our KillJobs
    "TASK_LOST": Verdict.UNKNOWABLE,
    "TASK_UNREACHABLE": Verdict.UNKNOWABLE,  # only once the driver has waited for the agent
    "TASK_GONE": Verdict.UNKNOWABLE,
    "TASK_GONE_BY_OPERATOR": Verdict.UNKNOWABLE,
    "TASK_DROPPED": Verdict.UNKNOWABLE,
    "TASK_UNKNOWN": Verdict.VANISHED,
    "TASK_ERROR": Verdict.NOT_STARTED,
}
TERMINAL = frozenset(VERDICTS) - {"TASK_UNREACHABLE", "TASK_UNKNOWN"}
REASON_VERDICTS: Mapping[str, Verdict] = {
    "REASON_MAX_COMPLETION_TIME_REACHED": Verdict.OUT_OF_TIME,
    "REASON_CONTAINER_LIMITATION_MEMORY": Verdict.OUT_OF_MEMORY,
}

# The command executor's words for how the command ended (stout's WSTRINGIFY).
_EXITED = re.compile(r"exited with status (\d+)")
_SIGNALLED = re.compile(r"terminated with signal ([^(\n]+?)(?: \(core dumped\))?$", re.MULTILINE)
_SIGNALS_BY_TEXT = {signal.strsignal(number): int(number) for number in signal.Signals if signal.strsignal(number)}


def ending_of(status: Mapping[str, Any], wall_time: float | None, job: Job) -> Ending:
    """The ending a terminal status reports."""
    state = status["state"]
    message = status.get("message", "")
    verdict = REASON_VERDICTS.get(status.get("reason", ""), VERDICTS[state])
    exit_code: int | None = 0 if state == "TASK_FINISHED" else None
    signal_number = 0
    if exited := _EXITED.search(message):
        exit_code = int(exited.group(1))
    elif signalled := _SIGNALLED.search(message):
        signal_number = _SIGNALS_BY_TEXT.get(signalled.group(1).strip(), 0)
    if verdict is Verdict.OUT_OF_TIME:
        message = f"killed after exceeding its wall time of {job.wall_time:g} s ({message})"
    elif verdict is Verdict.UNKNOWABLE and state == "TASK_UNREACHABLE":
        message = f"its agent stayed unreachable; its fate is unknown ({message})"
    elif state != "TASK_FINISHED":
        message = f"{state}: {message}" if message else state
    return Ending(verdict, exit_code, signal_number, wall_time, message)


@dataclass(frozen=True)
class Amounts:
    """Scalar resources as Mesos counts them: cpus, mem and disk in MB, gpus."""

    cpus: float = 0.0
    mem: float = 0.0
    disk: float = 0.0
    gpus: float = 0.0

    @classmethod
    def of_job(cls, job: Job) -> Amounts:
        gpus = sum(accelerator.count for accelerator in job.accelerators)
        return cls(job.cores, math.ceil(job.memory / MIB), math.ceil(job.disk / MIB), gpus)

    @classmethod
    def parse(cls, resources: list[dict[str, Any]]) -> Amounts:
        totals = {"cpus": 0.0, "mem": 0.0, "disk": 0.0, "gpus": 0.0}
        for resource in resources:
            if resource.get("type", "SCALAR") == "SCALAR" and resource.get("name") in totals:
                totals[resource["name"]] += float(resource["scalar"]["value"])
        return cls(**totals)

    def fits(self, other: Amounts) -> bool:
        """Whether these amounts fit in `other`."""
        return all(getattr(self, name) <= getattr(other, name) + 1e-9 for name in ("cpus", "mem", "disk", "gpus"))

    def minus(self, other: Amounts) -> Amounts:
        return Amounts(*(round(getattr(self, name) - getattr(other, name), 6) for name in ("cpus", "mem", "disk", "gpus")))

    def shortfall(self, offered: Amounts) -> tuple[str, float, float] | None:
        """The first resource (batchgate's name, asked, had: in batchgate's units) short here."""
        for name, ours, scale in (("cpus", "cores", 1), ("mem", "memory", MIB), ("disk", "disk", MIB), ("gpus", "accelerators", 1)):
            if getattr(self, name) > getattr(offered, name) + 1e-9:
                return ours, getattr(self, name) * scale, getattr(offered, name) * scale
        return None

    def as_resources(self, role: str) -> list[dict[str, Any]]:
        resources = []
        for name in ("cpus", "mem", "disk", "gpus"):
            value = getattr(self, name)
            if value > 0:  # Mesos refuses a resource of 0
                resource: dict[str, Any] = {"name": name, "type": "SCALAR", "scalar": {"value": value}}
                if role:
                    resource["allocation_info"] = {"role": role}
                resources.append(resource)
        return resources


def attributes_of(items: list[dict[str, Any]]) -> dict[str, str]:
    """An offer's or agent's attributes as text (TEXT and SCALAR ones)."""
    found: dict[str, str] = {}
    for item in items:
        if item.get("type") == "TEXT":
            found[item["name"]] = item["text"]["value"]
        elif item.get("type") == "SCALAR":
            found[item["name"]] = f"{item['scalar']['value']:g}"
    return found


@dataclass(frozen=True)
class Agent:
    agent_id: str
    hostname: str
    total: Amounts
    used: Amounts
    attributes: dict[str, str] = field(default_factory=dict)
    address: str = ""  # the agent's HTTP base URL (its /state and files API)


def agent_address(item: Mapping[str, Any], scheme: str = "http") -> str:
    """An agent's HTTP base URL from its GET_AGENTS entry: the address in its libprocess pid
    ("slave(1)@10.0.0.7:5051"), else its hostname and port (AgentInfo.port, 5051 by default)."""
    pid = str(item.get("pid", ""))
    if "@" in pid:
        return f"{scheme}://{pid.rpartition('@')[2]}"
    info = item.get("agent_info", {})
    return f"{scheme}://{info.get('hostname', '')}:{info.get('port', 5051)}"


def job_role(job: Job, default_role: str) -> str:
    return getattr(job.options, "role", "") or default_role


def job_attributes(job: Job) -> Mapping[str, str]:
    return getattr(job.options, "attributes", {}) if job.options is not None else {}


def wants_placement(job: Job, attributes: Mapping[str, str]) -> bool:
    """Whether an agent with these attributes may run `job` (MesosOptions.attributes)."""
    return all(attributes.get(name) == value for name, value in job_attributes(job).items())


def task_info(job: Job, task_id: str, agent_id: str, role: str, kill_grace: float) -> dict[str, Any]:
    """The TaskInfo for a job: the command executor runs `/bin/sh -c <command>`.

    Every string from the job is an argument of its own, never spliced into a shell line: the
    working directory and output paths become `$1`, `$2`... of a fixed prelude."""
    prelude: list[str] = []
    parameters: list[str] = []

    def parameter(value: str) -> str:
        parameters.append(value)
        return f'"${len(parameters)}"'

    if job.working_directory:
        prelude.append(f"cd -- {parameter(job.working_directory)} || exit")
    if job.stdout_path:
        prelude.append(f"exec >{parameter(job.stdout_path)}")
    if job.stderr_path:
        prelude.append(f"exec 2>{parameter(job.stderr_path)}")
    if prelude:
        arguments = ["/bin/sh", "-c", "; ".join([*prelude, f"exec /bin/sh -c {parameter(job.command)}"]), "sh", *parameters]
    else:
        arguments = ["/bin/sh", "-c", job.command]
    info: dict[str, Any] = {
        "name": job.name or f"batchgate job {job.job_id}",
        "task_id": {"value": task_id},
        "agent_id": {"value": agent_id},
        "resources": Amounts.of_job(job).as_resources(role),
        "command": {
            "shell": False,
            "value": "/bin/sh",
            "arguments": arguments,
            "environment": {"variables": [{"name": name, "type": "VALUE", "value": value} for name, value in job.environment.items()]},
        },
        "kill_policy": {"grace_period": {"nanoseconds": int(kill_grace * 1e9)}},
        "labels": {"labels": [{"key": "batchgate.job_id", "value": str(job.job_id)}]},
    }
    if job.wall_time is not None:
        info["max_completion_time"] = {"nanoseconds": int(job.wall_time * 1e9)}
    return info
