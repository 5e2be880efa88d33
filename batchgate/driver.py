"""The narrow interface between the kit and a scheduler.

The kit owns everything that is the same for every scheduler: ids, the job table, validation,
SetEnv, the event log and its streams, kill bookkeeping, persistence, metrics. A driver only
knows how to hand jobs to its scheduler, take them back, and say what became of them:

    submit(jobs)        give validated jobs to the scheduler, return their scheduler ids
    kill(jobs)          make them dead; return only once they are
    adopt(jobs)         after a restart: take back the jobs an earlier run had submitted
    events.started/ended   tell the kit what the scheduler did (from any thread); an ending
                        is what the driver saw (an exit code, the scheduler's verdict), and the
                        kit turns it into the exit reason by one rule (batchgate/endings.py)

plus a description of capacity (`limits`, `node_types`, `nodes`) and a scheduling status.

Job output (GetJobOutput) takes one of two hooks: a scheduler that writes a job's stdout and
stderr to files this service can read sets `output_files` (the kit names the files of jobs that
name none, reads them for tail and follow, and quotes the end of stderr in a failed job's
update); one whose output lives elsewhere (pod logs, CloudWatch, another batchgate service)
overrides `output`. A driver that does neither keeps no output: GetJobOutput says so.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from google.protobuf.message import Message

from batchgate.endings import Ending, Verdict
from batchgate.errors import NoOutput, Unsupported
from batchgate.v1 import batchgate_pb2 as pb

__all__ = ["Ending", "Verdict"]  # what drivers report ends with, from batchgate.endings


@dataclass(frozen=True)
class AcceleratorRequest:
    count: int
    kind: str = "gpu"
    model: str = ""
    brand: str = ""
    api: str = ""

    def satisfied_by(self, offered: AcceleratorRequest) -> bool:
        """Whether `offered` is of the kind asked for (an empty model/brand/api means any)."""
        return (
            self.kind == offered.kind
            and self.model in ("", offered.model)
            and self.brand in ("", offered.brand)
            and self.api in ("", offered.api)
        )


@dataclass(frozen=True)
class Job:
    """A job as the kit hands it to a driver: validated, defaults applied, environment merged."""

    job_id: int
    command: str
    name: str
    cores: float
    memory: int  # bytes
    disk: int  # bytes
    accelerators: tuple[AcceleratorRequest, ...] = ()
    preemptible: bool = False
    wall_time: float | None = None  # seconds; None means no limit
    # What to add to the scheduler's default environment: SetEnv's variables, then the job's own.
    environment: Mapping[str, str] = field(default_factory=dict)
    working_directory: str = ""
    stdout_path: str = ""
    stderr_path: str = ""
    job_set: str = ""
    request_key: str = ""
    backend: str = ""  # the backend asked for (or, behind a gateway, the one it chose)
    # The typed options for this backend (e.g. a pb.SlurmOptions), or None.
    options: Message | None = None


@dataclass(frozen=True)
class SubmittedJob:
    """A job the scheduler has, as the kit remembers it (also across restarts)."""

    job: Job
    backing_id: str
    started_at: float | None = None  # epoch seconds, when the driver reported the start


@dataclass(frozen=True)
class Limits:
    """The most one job may ask for on this backend; None means no known limit."""

    max_cores: float | None = None
    max_memory: int | None = None
    max_disk: int | None = None
    max_wall_time: float | None = None
    accelerators: tuple[AcceleratorRequest, ...] = ()
    supports_preemptible: bool = True


@dataclass(frozen=True)
class SchedulingStatus:
    message: str
    # True when jobs wait, none runs, and none of those waiting can ever start as things stand.
    deadlocked: bool = False


class JobEvents(Protocol):
    """How a driver tells the kit what its scheduler did. Safe to call from any thread."""

    # The backend name the service reports (its --name): what the driver measures is labelled
    # with it, like every other metric of the service.
    name: str

    def started(self, job_id: int, *, backing_id: str | None = None, at: float | None = None) -> None: ...

    def ended(self, job_id: int, ending: Ending) -> None: ...

    def checkpoint(self, key: str, value: int) -> None:
        """Remember `value` under `key`, durably and in order: it is committed together with
        the reports made before it, so a driver that resumes from a checkpoint (the gateway's
        cursor into a backend's stream) never skips an outcome it had reported."""
        ...

    def checkpoints(self) -> dict[str, int]:
        """The checkpoints committed so far (across restarts)."""
        ...


class OutputChunks(Protocol):
    """A job's output as a driver reads it from where its scheduler keeps it: an iterator of
    byte chunks that may block between them (the kit reads it in a thread); `cancel` (from
    another thread) ends it early, when the client goes away."""

    def __iter__(self) -> Iterator[bytes]: ...

    def cancel(self) -> None: ...


class Driver(abc.ABC):
    """One scheduler. Subclasses set `kind` and, if they take typed options, `options_field`."""

    kind: ClassVar[str]
    # The JobSpec oneof field this driver accepts ("slurm", "lsf", ...); other options are refused.
    options_field: ClassVar[str | None] = None
    # True for a driver that routes to other backends (the gateway): JobSpec.backend is its to read.
    routes: ClassVar[bool] = False
    # True when the scheduler writes a job's stdout/stderr to the files the job names (its
    # stdout_path/stderr_path), and this service can read them: see `output_file`.
    output_files: ClassVar[bool] = False
    # True when `output` reads a job's output from where the scheduler keeps it (pod logs,
    # CloudWatch, a sandbox): the kit then quotes the end of a failed job's stderr from there.
    keeps_output: ClassVar[bool] = False
    # True when the scheduler keeps a job's stdout and stderr as one log (a pod's log, an
    # awslogs stream): `output` answers both streams with it, and the kit says so in
    # GetCapabilities' features (output:one-log), so a client shows it once.
    one_log: ClassVar[bool] = False

    def attach(self, events: JobEvents, instance_id: str) -> None:
        """Called once, before any other call: keep `events` and start any background work.

        `instance_id` names this service's store for good (it survives restarts): tag what the
        scheduler holds with it, so a restarted service finds its own jobs and no one else's.
        """
        self.events = events
        self.instance_id = instance_id
        self.name = events.name

    @abc.abstractmethod
    def limits(self) -> Limits:
        """The largest job this backend can ever run (checked at issue time)."""

    def validate(self, job: Job) -> None:
        """Refuse what this scheduler cannot take, raising errors.InvalidArgument(field, why).

        The kit has already checked everything generic (types, ranges, limits).
        """

    def route(self, job: Job) -> str:
        """The backend this job goes to, recorded with it at issue (a gateway chooses here and
        raises a BatchgateError when no backend can take it). Others keep what was asked."""
        return job.backend

    @abc.abstractmethod
    def submit(self, jobs: Sequence[Job]) -> Sequence[str | None]:
        """Hand jobs to the scheduler; return their scheduler ids in the same order ("" where
        the id comes later, with `events.started`).

        A job the scheduler refuses is reported with `events.ended` (Verdict.NOT_STARTED and why).
        Raise only when the scheduler cannot be reached: the kit keeps the jobs and retries.
        None for a job means the same for that job alone (a router whose other backends took
        theirs): the kit keeps it queued and offers it again later.
        """

    @abc.abstractmethod
    def kill(self, jobs: Sequence[SubmittedJob]) -> None:
        """Kill these jobs and return once they are dead. Never report them afterwards."""

    @abc.abstractmethod
    def adopt(self, jobs: Sequence[SubmittedJob]) -> None:
        """Take back jobs an earlier run of the service submitted: watch them again, or report
        them ended (e.g. LOST, with a message) if they cannot be followed any more."""

    def output_file(self, job: Job, path: str) -> str:
        """Where this service reads the output file `path` of `job` (for `output_files` drivers):
        by default as given, relative to the service's directory."""
        return path

    def output(self, job: SubmittedJob, stream: int, tail_bytes: int, follow: bool) -> OutputChunks:
        """A job's output (`stream` is a pb.OutputStream) where it is not in files: the last
        `tail_bytes` (0: all), then, with `follow`, what the job writes until it has ended.
        Raise errors.NoOutput saying why when there is none. By default: this backend keeps none."""
        raise NoOutput(job.job.job_id, f"backend {self.name!r} ({self.kind}) keeps no job output")

    def scheduling_status(self) -> SchedulingStatus:
        """Why jobs wait, in words (e.g. "3 jobs waiting for memory: 6 GiB free, 8 GiB asked")."""
        return SchedulingStatus(message="")

    def node_types(self) -> list[pb.NodeType]:
        return []

    def features(self) -> Sequence[str]:
        """What GetCapabilities' features add about this scheduler (e.g. "disk:not-enforced")."""
        return ()

    def refusals(self, job: Job) -> list[pb.Shortfall]:
        """Why backends would not take `job`: a router's account, for CheckJob, of the backends
        it passed over; [] for a backend (the kit reports its own refusal)."""
        return []

    def seconds_running(self) -> dict[int, float] | None:
        """Running jobs (kit ids) and seconds each has run, where the driver knows better than
        the starts it reported (a gateway asks its backends); None: the kit's own table."""
        return None

    def backend_capabilities(self) -> list[pb.GetCapabilitiesResponse]:
        """A router's per-backend capabilities (GetCapabilitiesResponse.backends)."""
        return []

    def health(self) -> dict[str, bool]:
        """Health by name, polled and served by the health service (e.g. one per backend)."""
        return {}

    def nodes(self) -> list[pb.Node]:
        return []

    def ignore_node(self, name: str, ignored: bool, backend: str = "") -> None:
        """Start no more jobs on node `name` (as `nodes` names it), or start them there again;
        running jobs finish. Raises errors.UnknownNode, or errors.Unsupported where the
        scheduler cannot be told (the default). `backend` is for a router."""
        raise Unsupported(self.name, f"backend {self.name!r} ({self.kind}) cannot keep jobs off a node")

    def node_in_use(self, name: str, backend: str = "") -> int:
        """How many of this service's jobs run on node `name`. Raises as `ignore_node`."""
        raise Unsupported(self.name, f"backend {self.name!r} ({self.kind}) does not say which node runs which job")

    def close(self) -> Sequence[int]:
        """Stop background work, on a graceful shutdown.

        Jobs left with the scheduler keep running and are adopted by the next run. A driver whose
        jobs cannot outlive it (the local one) stops them and returns their ids: the kit queues
        them again, and they run anew after the restart.
        """
        return ()
