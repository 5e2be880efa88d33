"""What AWS Batch is told of a job, and what its answers mean: pure translation, no calls.

A job goes to `SubmitJob` with container overrides (command, environment, vCPUs, memory, GPUs),
its wall time as the job's timeout, and tags that say whose it is. A `JobDetail` from
`DescribeJobs` comes back as a phase (waiting, running) or an Ending for the kit's rule
(batchgate/endings.py): the driver never picks an exit reason.
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchgate.driver import Ending, Job, Verdict

MIB = 1024**2
MIN_MEMORY_MIB = 4  # AWS Batch refuses less (Toil's MIN_REQUESTABLE_MIB)
MIN_VCPUS = 1
AWS_MINIMUM_TIMEOUT = 60  # seconds: AWS Batch's floor for attemptDurationSeconds

TAG_INSTANCE = "batchgate:instance"
TAG_JOB = "batchgate:job"
TAG_REQUEST_KEY = "batchgate:request-key"
TAG_OWNER = "Owner"  # what Toil's AWS Batch system tags with --awsBatchOwnerTag
# AWS's tag values: letters, digits, spaces and _ . : / = + - @, at most 256 characters.
TAG_VALUE = re.compile(r"[\w .:/=+\-@]{0,256}", re.UNICODE)

SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # what /bin/sh passes on to the command
NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_-]")
NAME_LIMIT = 128

# The job's command runs as `/bin/sh -c COMMAND` in a shell that is not the container's PID 1:
# the kernel drops signals that a namespace's init has no handler for, so a job running as PID 1
# could not even `kill -9 $$` itself. $0 is the command, $1 the working directory, $2 and $3 the
# files for stdout and stderr ("" for the container's log).
WRAPPER = (
    'if [ -n "$1" ]; then cd -- "$1" || exit; fi; '
    'if [ -n "$2" ]; then exec >>"$2" || exit; fi; '
    'if [ -n "$3" ]; then exec 2>>"$3" || exit; fi; '
    '/bin/sh -c "$0"; exit $?'
)

# Where the awslogs log driver (AWS Batch's default) puts a job's output unless its job
# definition's logConfiguration names an awslogs-group (AWS Batch user guide, "Use the awslogs log
# driver"; DescribeJobs' ContainerDetail.logStreamName: "The log group for AWS Batch jobs is
# /aws/batch/job").
DEFAULT_LOG_GROUP = "/aws/batch/job"
AWSLOGS = "awslogs"

RUNNING_STATES = frozenset({"RUNNING"})
WAITING_STATES = frozenset({"SUBMITTED", "PENDING", "RUNNABLE", "STARTING"})
ENDED_STATES = frozenset({"SUCCEEDED", "FAILED"})

# Words in statusReason / container.reason that say what ended a failed job (AWS Batch's own
# wording, from its troubleshooting and job-state documentation).
TIMEOUT_WORDS = ("attempt duration exceeded timeout",)
OUT_OF_MEMORY_WORDS = ("outofmemoryerror", "out of memory")
HOST_LOST_WORDS = ("host ec2", "spot", "reclaimed", "instance was interrupted")
NEVER_STARTED_WORDS = ("cannotpullcontainer", "cannotstartcontainer", "cannotcreatecontainer", "cannotinspectcontainer", "resourceinitializationerror")


class Phase(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    ENDED = "ended"


def job_name(job: Job) -> str:
    """The job's name as AWS Batch allows it (Toil's rules: spaces become hyphens, other
    characters go, it starts with a letter or digit, at most 128), never shorter than two
    characters, which moto demands."""
    name = NAME_CHARACTERS.sub("", (job.name or "").replace(" ", "-"))
    if not name or not name[0].isalnum():
        name = "j" + name
    if len(name) < 2:
        name = f"{name}-{job.job_id}"
    return name[:NAME_LIMIT]


def tag_value(text: str) -> str:
    """`text` as a tag value: itself where AWS allows it, else a digest that still tells it apart."""
    if TAG_VALUE.fullmatch(text):
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def tags(job: Job, instance_id: str, owner: str) -> dict[str, str]:
    found = {TAG_INSTANCE: instance_id, TAG_JOB: str(job.job_id)}
    if job.request_key:
        found[TAG_REQUEST_KEY] = tag_value(job.request_key)
    if owner:
        found[TAG_OWNER] = owner
    return found


def timeout_seconds(job: Job, default: float | None, minimum: int) -> int | None:
    """The job's attemptDurationSeconds: its wall time, rounded up, and raised to the endpoint's
    minimum (AWS Batch's is 60 s: a shorter wall time lets the job run for a minute)."""
    wall_time = job.wall_time or default
    if not wall_time:
        return None
    return max(minimum, math.ceil(wall_time))


def submit_request(
    job: Job, *, queue: str, definition: str, instance_id: str, owner: str, timeout: int | None
) -> dict[str, Any]:
    """The keyword arguments of boto3's `submit_job` for `job`."""
    requirements = [
        {"type": "VCPU", "value": str(max(MIN_VCPUS, math.ceil(job.cores)))},
        {"type": "MEMORY", "value": str(max(MIN_MEMORY_MIB, math.ceil(job.memory / MIB)))},
    ]
    gpus = sum(accelerator.count for accelerator in job.accelerators if accelerator.kind == "gpu")
    if gpus:
        requirements.append({"type": "GPU", "value": str(gpus)})
    request: dict[str, Any] = {
        "jobName": job_name(job),
        "jobQueue": queue,
        "jobDefinition": definition,
        "containerOverrides": {
            "command": ["/bin/sh", "-c", WRAPPER, job.command, job.working_directory, job.stdout_path, job.stderr_path],
            "environment": [{"name": name, "value": value} for name, value in job.environment.items()],
            "resourceRequirements": requirements,
        },
        "tags": tags(job, instance_id, owner),
        # The tags on the job alone: the ECS task may not be tagged (AWS refuses it without
        # permissions batchgate does not need).
        "propagateTags": False,
    }
    if timeout:
        request["timeout"] = {"attemptDurationSeconds": timeout}
    return request


@dataclass(frozen=True)
class Seen:
    """One job as DescribeJobs (or ListJobs) describes it."""

    backing_id: str
    status: str
    reason: str = ""  # statusReason
    container_reason: str = ""
    exit_code: int | None = None
    started_at: float | None = None  # epoch seconds
    stopped_at: float | None = None
    timeout: int | None = None  # attemptDurationSeconds, when it had one
    tags: Mapping[str, str] | None = None
    # Where its container's output goes: AWS names the stream once the attempt is RUNNING.
    log_stream: str = ""
    log_group: str = DEFAULT_LOG_GROUP
    log_driver: str = AWSLOGS

    @classmethod
    def from_detail(cls, detail: Mapping[str, Any]) -> Seen:
        container = detail.get("container") or {}
        attempts = detail.get("attempts") or []
        last_attempt = (attempts[-1].get("container") or {}) if attempts else {}
        exit_code = container.get("exitCode", last_attempt.get("exitCode"))
        log_config = container.get("logConfiguration") or {}
        return cls(
            backing_id=detail["jobId"],
            status=detail.get("status", ""),
            reason=detail.get("statusReason", "") or "",
            container_reason=container.get("reason") or last_attempt.get("reason") or "",
            exit_code=None if exit_code is None else int(exit_code),
            started_at=_seconds(detail.get("startedAt")),
            stopped_at=_seconds(detail.get("stoppedAt")),
            timeout=(detail.get("timeout") or {}).get("attemptDurationSeconds"),
            tags=detail.get("tags"),
            log_stream=container.get("logStreamName") or last_attempt.get("logStreamName") or "",
            log_group=(log_config.get("options") or {}).get("awslogs-group") or DEFAULT_LOG_GROUP,
            log_driver=log_config.get("logDriver") or AWSLOGS,
        )

    @property
    def phase(self) -> Phase | None:
        if self.status in ENDED_STATES:
            return Phase.ENDED
        if self.status in RUNNING_STATES:
            return Phase.RUNNING
        if self.status in WAITING_STATES:
            return Phase.WAITING
        return None

    @property
    def wall_time(self) -> float | None:
        if self.started_at is None or self.stopped_at is None:
            return None
        return max(self.stopped_at - self.started_at, 0.001)  # it ran, if only for a moment

    def ending(self) -> Ending:
        """What became of an ended job, for the kit's rule."""
        verdict, why = self._verdict()
        words = f": {self.reason}" if self.reason else ""
        if self.container_reason and self.container_reason not in self.reason:
            words += f" ({self.container_reason})"
        message = f"AWS Batch job {self.backing_id} {self.status}{words}"
        if why:
            message += f"; {why}"
        exit_code = 0 if self.status == "SUCCEEDED" else self.exit_code
        return Ending(verdict, exit_code=exit_code, wall_time=self.wall_time, message=message)

    def _verdict(self) -> tuple[Verdict, str]:
        if self.status == "SUCCEEDED":
            return Verdict.EXITED, ""
        said = f"{self.reason} {self.container_reason}".lower()
        if any(words in said for words in OUT_OF_MEMORY_WORDS):
            return Verdict.OUT_OF_MEMORY, "killed for using more memory than it asked for"
        if any(words in said for words in TIMEOUT_WORDS) or self._ran_out_its_timeout():
            return Verdict.OUT_OF_TIME, f"it ran past its wall time (timeout of {self.timeout} s)"
        if self.started_at is None:
            if any(words in said for words in NEVER_STARTED_WORDS):
                return Verdict.NOT_STARTED, "its container could not be started"
            # Cancelled before it ran by someone else than batchgate (ours are never reported).
            return Verdict.CANCELLED, "cancelled before it started"
        if any(words in said for words in HOST_LOST_WORDS) and self.exit_code is None:
            return Verdict.UNKNOWABLE, "the instance it ran on went away"
        return Verdict.FAILED, ""

    def _ran_out_its_timeout(self) -> bool:
        """A failure with no exit code after running for its whole timeout: how moto reports a
        timeout (it gives no reason), and what AWS's own reason says in words."""
        return (
            self.timeout is not None
            and self.exit_code is None
            and self.wall_time is not None
            and self.wall_time >= self.timeout
        )


def _seconds(milliseconds: object) -> float | None:
    if not isinstance(milliseconds, (int, float)) or milliseconds <= 0:
        return None
    return milliseconds / 1000.0
