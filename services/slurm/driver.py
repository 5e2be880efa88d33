"""Slurm, as batchgate's command-line kit (batchgate/hpc.py) needs to know it.

sbatch takes a generated batch script on stdin; `squeue --me` answers for every job in one call;
sacct answers for jobs that have left the queue (with `--completion`, reading the jobcomp file,
where no slurmdbd keeps accounting); scancel cancels; sinfo describes the nodes.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from batchgate import units
from batchgate.driver import AcceleratorRequest, Job, Limits, Verdict
from batchgate.errors import InvalidArgument, SchedulerError
from batchgate.hpc import (
    LIMITS_MAX_AGE,
    Command,
    CommandLineDriver,
    Host,
    NativeStatus,
    Phase,
    Runner,
    Snapshot,
    StateTable,
    job_script,
    limits_of,
    node_messages,
    node_type_messages,
    run_command,
)
from batchgate.v1 import batchgate_pb2 as pb

log = logging.getLogger(__name__)

MIB = 1024**2

STATES: StateTable = {
    "PENDING": Phase.PENDING,
    "CONFIGURING": Phase.PENDING,  # nodes allocated but still booting: nothing runs yet
    "REQUEUED": Phase.PENDING,
    "REQUEUE_HOLD": Phase.PENDING,
    "REQUEUE_FED": Phase.PENDING,
    "RESV_DEL_HOLD": Phase.PENDING,
    "RUNNING": Phase.RUNNING,
    "COMPLETING": Phase.RUNNING,
    "SIGNALING": Phase.RUNNING,
    "STAGE_OUT": Phase.RUNNING,
    "SUSPENDED": Phase.RUNNING,
    "STOPPED": Phase.RUNNING,
    "RESIZING": Phase.RUNNING,
    "COMPLETED": Verdict.EXITED,
    "FAILED": Verdict.FAILED,
    "SPECIAL_EXIT": Verdict.FAILED,
    "OUT_OF_MEMORY": Verdict.OUT_OF_MEMORY,
    # Toil's Slurm batch system reports these KILLED; TIMELIMIT tells a workflow to ask for more
    # time (Toil's --doubleTime) rather than retry the same request.
    "TIMEOUT": Verdict.OUT_OF_TIME,
    "DEADLINE": Verdict.OUT_OF_TIME,
    # Cancelled by us never gets here: a killed job is not watched any more.
    "CANCELLED": Verdict.CANCELLED,
    "PREEMPTED": Verdict.CANCELLED,
    "REVOKED": Verdict.CANCELLED,
    "BOOT_FAIL": Verdict.UNKNOWABLE,
    "NODE_FAIL": Verdict.UNKNOWABLE,
}

TRANSIENT_ERRORS = (
    "Unable to contact slurm controller",
    "Socket timed out",
    "Zero Bytes were transmitted or received",
    "Resource temporarily unavailable",
    "temporarily unable to accept job",
)

# Pending reasons that no amount of waiting clears: the cluster, as configured, refuses the job.
NEVER_CLEARS = frozenset(
    {
        "PartitionConfig",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "BadConstraints",
        "InvalidAccount",
        "InvalidQOS",
        "DependencyNeverSatisfied",
    }
)

# sbatch options that would fight what batchgate sets from the job (cores, memory, accelerators,
# wall time) or relies on (one job, its script, its tag, an immediate answer). sbatch accepts any
# unambiguous abbreviation of a long option, so an abbreviation of one of these is refused too.
REFUSED_PREFIXES = ("mem", "cpus", "ntasks", "gpus", "time")  # --mem-per-cpu, --cpus-per-gpu ...
REFUSED_NAMES = ("nodes", "gres", "wrap", "comment", "array", "wait")
REFUSED_SHORT = "cnNtGaW"

QUEUE_FIELDS = ("JobID", "State", "Reason", "exit_code", "StartTime", "EndTime", "Comment")  # Comment last: it may hold "|"
HISTORY_FIELDS = ("JobIDRaw", "State", "ExitCode", "Start", "End")
NODE_FIELDS = ("NodeList", "Partition", "CPUs", "CPUsState", "Memory", "AllocMem", "Disk", "Gres", "StateLong", "Time")
ACCOUNTING_DISABLED = "accounting storage is disabled"
GRES = re.compile(r"(\w+)(?::([^:(,]+))?:(\d+)")  # gpu:tesla:2(S:0-1) or gpu:2


def extra_args_problem(arg: str) -> str | None:
    """Why `arg` may not be passed to sbatch, or None."""
    if arg.startswith("--"):
        name = arg[2:].split("=", 1)[0]
        stems = REFUSED_PREFIXES + REFUSED_NAMES
        if name and (name.startswith(REFUSED_PREFIXES) or any(stem.startswith(name) for stem in stems)):
            return (
                f"{arg!r} fights what batchgate sets from the job itself (cores, memory, accelerators, "
                "wall time, slurm.gres) or relies on (one job, its script, its tag)"
            )
    elif len(arg) > 1 and arg[0] == "-" and arg[1] in REFUSED_SHORT:
        return f"{arg!r} fights what batchgate sets from the job itself (-c, -n, -N, -t, -G, -a and -W are its own)"
    return None


def slurm_time(seconds: float) -> str:
    """minutes:seconds, which sbatch rounds up to whole minutes."""
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}:{rest:02d}"


def output_path(path: str) -> str:
    """A path sbatch takes literally ("%" starts its filename patterns); unset means discarded."""
    return path.replace("%", "%%") if path else "/dev/null"


def epoch(text: str) -> float | None:
    """Seconds since the epoch for Slurm's local "2024-05-01T12:00:00"; None for N/A, Unknown..."""
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def accelerators(gres: str) -> tuple[AcceleratorRequest, ...]:
    return tuple(AcceleratorRequest(count=int(count), kind=name, model=model or "") for name, model, count in GRES.findall(gres))


@dataclass(frozen=True)
class NodeRow:
    """One line of sinfo: a node as one partition sees it."""

    host: Host  # disk: the node's TmpDisk
    partition: str
    default_partition: bool
    time_limit: float | None  # the partition's, in seconds; None: unlimited

    @classmethod
    def parse(cls, line: str) -> NodeRow:
        name, partition, cores, cores_state, memory, memory_used, disk, gres, state, time_limit = line.split("|")[: len(NODE_FIELDS)]
        host = Host(
            name=name,
            state=state,
            cores=int(cores),
            cores_used=int(cores_state.split("/")[0]),  # allocated/idle/other/total
            memory=int(memory) * MIB,
            memory_used=int(memory_used) * MIB,
            disk=int(disk) * MIB,
            accelerators=accelerators(gres),
        )
        return cls(
            host=host,
            partition=partition.rstrip("*"),
            default_partition=partition.endswith("*"),
            time_limit=None if time_limit in ("infinite", "UNLIMITED") else units.parse_duration(time_limit),
        )


class SlurmDriver(CommandLineDriver):
    kind = "slurm"
    options_field = "slurm"
    states = STATES
    transient_errors = TRANSIENT_ERRORS

    def __init__(
        self,
        *,
        partition: str = "",
        account: str = "",
        qos: str = "",
        gres: str = "",
        time_limit: float | None = None,
        extra_args: Sequence[str] = (),
        poll_interval: float = 1.0,
        command_timeout: float = 60.0,
        runner: Runner = run_command,
    ) -> None:
        super().__init__(poll_interval=poll_interval, command_timeout=command_timeout, runner=runner)
        self.defaults = pb.SlurmOptions(partition=partition, account=account, qos=qos, gres=gres, extra_args=extra_args)
        self.time_limit = time_limit
        self._sacct = ["sacct"]  # becomes `sacct --completion` once sacct says there is no slurmdbd
        self._nodes: Snapshot[list[NodeRow]] = Snapshot(self._query_nodes)

    # ---- submitting ---------------------------------------------------------------------------

    def validate(self, job: Job) -> None:
        super().validate(job)
        if isinstance(job.options, pb.SlurmOptions):
            for index, arg in enumerate(job.options.extra_args):
                problem = extra_args_problem(arg)
                if problem:
                    raise InvalidArgument(f"slurm.extra_args[{index}]", problem)

    def submit_command(self, job: Job) -> Command:
        options = pb.SlurmOptions()
        options.CopyFrom(self.defaults)
        if isinstance(job.options, pb.SlurmOptions):
            options.MergeFrom(job.options)  # its strings replace ours; its extra_args follow ours
        argv = [
            "sbatch",
            "--parsable",
            f"--job-name={job.name or f'batchgate-{job.job_id}'}",
            f"--comment={self.tag(job.job_id)}",
            f"--cpus-per-task={max(1, math.ceil(job.cores))}",
            f"--output={output_path(job.stdout_path)}",
            f"--error={output_path(job.stderr_path)}",
        ]
        if job.memory > 0:  # --mem=0 would mean the whole node
            argv.append(f"--mem={math.ceil(job.memory / MIB)}M")
        gres = [f"{a.kind}:{a.model}:{a.count}" if a.model else f"{a.kind}:{a.count}" for a in job.accelerators]
        gres += [options.gres] if options.gres else []
        if gres:
            argv.append(f"--gres={','.join(gres)}")
        time_limit = job.wall_time or self.time_limit
        if time_limit:
            argv.append(f"--time={slurm_time(time_limit)}")
        for flag, value in (("--partition", options.partition), ("--account", options.account), ("--qos", options.qos)):
            if value:
                argv.append(f"{flag}={value}")
        if job.working_directory:
            argv.append(f"--chdir={job.working_directory}")
        argv += options.extra_args
        return Command(argv, stdin=job_script(job))

    def parse_submitted(self, stdout: str) -> str:
        return stdout.strip().split(";")[0]  # "<id>" or "<id>;<cluster>"

    def cancel_command(self, backing_ids: Sequence[str]) -> Command:
        return Command(["scancel", *backing_ids])

    # ---- watching -----------------------------------------------------------------------------

    def queue_command(self) -> Command:
        return Command(["squeue", "--me", "--noheader", "--states=all", "--Format=" + ",".join(f"{field}:|" for field in QUEUE_FIELDS)])

    def parse_queue(self, stdout: str) -> Iterable[NativeStatus]:
        for line in stdout.splitlines():
            if not line.endswith("|"):
                continue
            job_id, state, reason, wait_status, start, end, comment = line[:-1].split("|", 6)
            raw = int(wait_status)  # a wait(2) status: the exit code above the signal number
            yield NativeStatus(
                backing_id=job_id,
                state=state,
                reason="" if reason == "None" else reason,
                exit_code=(raw >> 8) & 0xFF,
                signal=raw & 0x7F,
                started_at=epoch(start),
                ended_at=epoch(end),
                tag="" if comment == "(null)" else comment,
            )

    def history(self, backing_ids: Sequence[str]) -> Iterable[NativeStatus]:
        argv = [
            *self._sacct,
            "--noheader",
            "--parsable2",
            "--allocations",
            "--starttime=1970-01-01",
            f"--jobs={','.join(backing_ids)}",
            f"--format={','.join(HISTORY_FIELDS)}",
        ]
        try:
            stdout = self.run(Command(argv))
        except SchedulerError as error:
            if len(self._sacct) > 1 or ACCOUNTING_DISABLED not in error.message:
                raise
            log.info("no slurmdbd: reading how jobs ended with `sacct --completion` (jobcomp)")
            self._sacct = ["sacct", "--completion"]
            return self.history(backing_ids)
        return [self._parse_history_line(line) for line in stdout.splitlines() if line.count("|") == len(HISTORY_FIELDS) - 1]

    @staticmethod
    def _parse_history_line(line: str) -> NativeStatus:
        job_id, state, exit_code, start, end = line.split("|")
        code, _, signal = exit_code.partition(":")
        return NativeStatus(
            backing_id=job_id,
            state=state.split(" ")[0],  # "CANCELLED by 1000"
            exit_code=int(code or 0),
            signal=int(signal or 0),
            started_at=epoch(start),
            ended_at=epoch(end),
        )

    def never_starts(self, reason: str) -> bool:
        first, _, rest = reason.partition(",")
        return first in NEVER_CLEARS or (first == "ReqNodeNotAvail" and "UnavailableNodes:" in rest and not rest.endswith(":"))

    # ---- capacity -----------------------------------------------------------------------------

    def _query_nodes(self) -> list[NodeRow]:
        argv = ["sinfo", "--noheader", "--Node", "--Format=" + ",".join(f"{field}:|" for field in NODE_FIELDS)]
        return [NodeRow.parse(line) for line in self.run(Command(argv)).splitlines() if line.endswith("|")]

    def limits(self) -> Limits:
        rows, _ = self._nodes.get(LIMITS_MAX_AGE, stale_ok=True)
        partition = [r for r in rows if r.partition == self.defaults.partition] or [r for r in rows if r.default_partition]
        return limits_of([row.host for row in partition], partition[0].time_limit if partition else None)

    def nodes(self) -> list[pb.Node]:
        rows, _ = self._nodes.get(self.poll_interval)
        return node_messages(row.host for row in rows)

    def node_types(self) -> list[pb.NodeType]:
        rows, _ = self._nodes.get(self.poll_interval)
        return node_type_messages(row.host for row in rows)
