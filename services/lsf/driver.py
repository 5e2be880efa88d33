"""IBM Spectrum LSF, as batchgate's command-line kit (batchgate/hpc.py) needs to know it.

bsub takes the job script on stdin and answers "Job <N> is submitted to queue <q>."; each job's
name is its tag, so one `bjobs -a -J 'batchgate:<instance>:*'` answers for every job this service
submitted: with -json where the LSF has it (10.1.0.2 and later, as `lsid` tells), else the classic
wide table, with `bjobs -l` once for each job seen ended there (its exit code and TERM_ reason).
bhist, then bacct, answer for jobs bjobs has forgotten (after lsb.params' CLEAN_PERIOD); bkill
kills; lshosts and bhosts describe the hosts; bqueues -l gives the queue's RUNLIMIT.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from batchgate.driver import AcceleratorRequest, Job, Limits
from batchgate.errors import InvalidArgument, SchedulerError
from batchgate.hpc import (
    LIMITS_MAX_AGE,
    Command,
    CommandFailed,
    CommandLineDriver,
    Host,
    NativeStatus,
    Runner,
    Snapshot,
    job_script,
    limits_of,
    node_messages,
    node_type_messages,
    run_command,
)
from batchgate.v1 import batchgate_pb2 as pb

from .reading import (
    DELIMITER,
    ENDED,
    QUEUE_FIELDS,
    STATES,
    classic_status,
    column_records,
    ended_jobs,
    json_records,
    record_status,
    run_limit,
    size_bytes,
)

log = logging.getLogger(__name__)

TRANSIENT_ERRORS = ("LSF is down", "not responding", "Cannot connect to LSF", "Communication time out")
# What bjobs, bhist and bkill say when no job matches or a job has ended already: nothing to do.
EMPTY_ANSWERS = ("No job found", "No unfinished job found", "No matching job found", "is not found", "Job has already finished")
SUBMITTED = re.compile(r"Job <(\d+)> is submitted to (?:default )?queue <[^>]*>\.")
BJOBS_OUTPUTS = ("auto", "json", "columns", "classic")
JSON_SINCE = (10, 1, 0, 2)  # the first LSF whose bjobs has -json (its release notes, "Command output formatting")
UNITS = ("KB", "MB", "GB", "TB", "PB", "EB")
# bsub options that would fight what batchgate sets from the job or relies on (one batch job, its
# script, its tag, an immediate answer); -R only where it asks for memory.
REFUSED = frozenset({"-n", "-M", "-W", "-J", "-Jd", "-o", "-oo", "-e", "-eo", "-gpu", "-cwd", "-q", "-P", "-K"})


def extra_args_problem(args: Sequence[str], index: int) -> str | None:
    """Why `args[index]` may not be passed to bsub, or None."""
    arg = args[index]
    if arg in REFUSED or arg.startswith("-I"):
        return (
            f"{arg!r} fights what batchgate sets from the job itself (cores, memory, wall time, accelerators, "
            "name, output, working directory; queue and project are lsf.queue and lsf.project) or relies on"
        )
    if index and args[index - 1] == "-R" and "mem" in arg:
        return f"-R {arg!r} asks for memory, which batchgate sets from the job's own"
    return None


class LsfDriver(CommandLineDriver):
    kind = "lsf"
    options_field = "lsf"
    states = STATES
    transient_errors = TRANSIENT_ERRORS

    def __init__(
        self,
        *,
        queue: str = "",
        project: str = "",
        time_limit: float | None = None,
        extra_args: Sequence[str] = (),
        unit_for_limits: str = "",
        memory_per_slot: bool = False,
        bjobs_output: str = "auto",
        poll_interval: float = 1.0,
        command_timeout: float = 60.0,
        runner: Runner = run_command,
    ) -> None:
        super().__init__(poll_interval=poll_interval, command_timeout=command_timeout, runner=runner)
        self.defaults = pb.LsfOptions(queue=queue, project=project, extra_args=extra_args)
        self.time_limit = time_limit
        self.unit_for_limits = unit_for_limits.upper()
        self.memory_per_slot = memory_per_slot
        self._units_lock = threading.Lock()
        self.bjobs_output = bjobs_output  # "auto": -json where `lsid` names LSF 10.1.0.2 or later, else classic
        self._json_answered = False  # whether bjobs has once answered -json here
        self._explained: dict[str, NativeStatus] = {}  # jobs seen ended in classic bjobs, as bjobs -l told
        self._hosts: Snapshot[list[Host]] = Snapshot(self._query_hosts)
        self._run_limit: Snapshot[float | None] = Snapshot(self._query_run_limit)

    # ---- submitting ---------------------------------------------------------------------------

    def validate(self, job: Job) -> None:
        super().validate(job)
        if len(job.accelerators) > 1:
            raise InvalidArgument("accelerators", "LSF takes one GPU request (-gpu) per job")
        if isinstance(job.options, pb.LsfOptions):
            for index in range(len(job.options.extra_args)):
                problem = extra_args_problem(job.options.extra_args, index)
                if problem:
                    raise InvalidArgument(f"lsf.extra_args[{index}]", problem)

    def units(self) -> tuple[int, int]:
        """Bytes per unit of -M and of rusage[mem]: LSF_UNIT_FOR_LIMITS sets both; unset, -M is
        in KB and rusage in MB (lsf.conf, else `lsadmin showconf lim`, unless given). Asked once:
        the submitting threads wait for the first to learn it rather than each asking lsadmin."""
        with self._units_lock:
            if not self.unit_for_limits:
                self.unit_for_limits = self._configured_unit() or "-"
        if self.unit_for_limits in UNITS:
            unit = 1024 ** (UNITS.index(self.unit_for_limits) + 1)
            return unit, unit
        return 1024, 1024**2

    def _configured_unit(self) -> str:
        """The cluster's LSF_UNIT_FOR_LIMITS, "" where it sets none. A failing lsadmin fails the
        submission (it is asked again for the next): a guessed unit may be a million times off."""
        conf = Path(os.environ.get("LSF_ENVDIR", "/etc")) / "lsf.conf"
        try:
            text = conf.read_text()
        except OSError:
            text = self.run(Command(["lsadmin", "showconf", "lim"]))
        found = re.search(r"^\s*LSF_UNIT_FOR_LIMITS\s*=\s*\"?(\w+)", text, flags=re.MULTILINE)
        return found.group(1).upper() if found else ""

    def submit_command(self, job: Job) -> Command:
        options = pb.LsfOptions()
        options.CopyFrom(self.defaults)
        if isinstance(job.options, pb.LsfOptions):
            options.MergeFrom(job.options)  # its strings replace ours; its extra_args follow ours
        slots = max(1, math.ceil(job.cores))
        argv = [
            "bsub",
            *("-J", self.tag(job.job_id), "-Jd", job.name or f"batchgate-{job.job_id}", "-n", str(slots)),
            *("-oo", job.stdout_path or "/dev/null", "-eo", job.stderr_path or "/dev/null"),
        ]
        if job.memory > 0:
            amount = job.memory / slots if self.memory_per_slot else job.memory
            limit_unit, reserve_unit = self.units()
            reserve = max(1, math.ceil(amount / reserve_unit))
            argv += ["-R", f"select[mem>{reserve}] rusage[mem={reserve}]", "-M", str(max(1, math.ceil(amount / limit_unit)))]
        for request in job.accelerators:
            argv += ["-gpu", f"num={request.count}" + (f":gmodel={request.model}" if request.model else "")]
        time_limit = job.wall_time or self.time_limit
        if time_limit:
            argv += ["-W", str(math.ceil(time_limit / 60))]  # whole minutes
        for flag, value in (("-q", options.queue), ("-P", options.project), ("-cwd", job.working_directory)):
            if value:
                argv += [flag, value]
        return Command([*argv, *options.extra_args], stdin=job_script(job))

    def parse_submitted(self, stdout: str) -> str:
        found = SUBMITTED.search(stdout)
        if not found:  # never a made-up id: the job may or may not be in LSF, so look and retry
            raise CommandFailed(["bsub"], 0, f"bsub answered without a job id: {stdout.strip()!r}", transient=True)
        return found.group(1)

    def cancel_command(self, backing_ids: Sequence[str]) -> Command:
        return Command(["bkill", *backing_ids], empty_answers=EMPTY_ANSWERS)

    # ---- watching -----------------------------------------------------------------------------

    def output(self) -> str:
        """How bjobs is asked: json, columns (-o, for an LSF 9 without -json) or classic (-w, -l).
        A failing lsid fails the query it was asked for, as bjobs failing would; it is asked again."""
        if self.bjobs_output == "auto":
            found = re.search(r"LSF[^\d\n]*(\d+(?:\.\d+)*)", self.run(Command(["lsid"])))
            release = tuple(int(part) for part in found.group(1).split(".")) if found else ()
            self.bjobs_output = "json" if release >= JSON_SINCE else "classic"
            log.info("LSF %s: bjobs answers %s", ".".join(map(str, release)) or "of unknown version", self.bjobs_output)
        return self.bjobs_output

    def queue_command(self) -> Command:
        mine = ["bjobs", "-a", "-J", self.tag(0).removesuffix("0") + "*"]
        output = self.output()
        if output == "json":
            return Command([*mine, "-json", "-o", QUEUE_FIELDS], empty_answers=EMPTY_ANSWERS)
        if output == "columns":
            return Command([*mine, "-noheader", "-o", f"{QUEUE_FIELDS} delimiter='{DELIMITER}'"], empty_answers=EMPTY_ANSWERS)
        return Command([*mine, "-w"], empty_answers=EMPTY_ANSWERS)

    def parse_queue(self, stdout: str) -> Iterable[NativeStatus]:
        if not stdout.strip():
            return []  # no job matched
        if self.bjobs_output == "classic":
            return [status for line in stdout.splitlines() if (status := classic_status(line))]
        records = json_records(stdout) if self.bjobs_output == "json" else column_records(stdout)
        now = time.time()
        return [record_status(record, now) for record in records if "ERROR" not in record]

    def _query_queue(self) -> dict[str, NativeStatus]:
        try:
            queue = super()._query_queue()
        except SchedulerError as error:
            if self.bjobs_output != "json" or self._json_answered:
                raise
            # Until bjobs has once answered -json, its failure may mean this LSF has no -json,
            # whatever lsid said: ask the classic way, and keep to it if that answers.
            self.bjobs_output = "classic"
            try:
                queue = super()._query_queue()
            except SchedulerError:
                self.bjobs_output = "json"  # failing either way: not for want of -json
                raise
            log.warning("bjobs -json failed, the classic bjobs answers: keeping to it: %s", error.message)
        self._json_answered = self._json_answered or self.bjobs_output == "json"
        return self._with_endings(queue) if self.bjobs_output == "classic" else queue

    def _with_endings(self, queue: dict[str, NativeStatus]) -> dict[str, NativeStatus]:
        """The classic answer, its ended jobs as `bjobs -l` describes them: one call for every job
        newly seen ended, each remembered while bjobs lists it. A job gone from bjobs meanwhile is
        left out, for bhist and bacct to tell (the kit asks them for jobs the queue lacks)."""
        ended = [backing_id for backing_id, status in queue.items() if status.state in ENDED]
        unexplained = [backing_id for backing_id in ended if backing_id not in self._explained]
        if unexplained:
            self._explained.update((s.backing_id, s) for s in ended_jobs(self.run(Command(["bjobs", "-l", *unexplained], empty_answers=EMPTY_ANSWERS))))
        self._explained = {backing_id: self._explained[backing_id] for backing_id in ended if backing_id in self._explained}
        for backing_id in ended:
            explained = self._explained.get(backing_id)
            if explained is None:
                del queue[backing_id]
            else:
                queue[backing_id] = replace(explained, tag=queue[backing_id].tag)
        return queue

    def history(self, backing_ids: Sequence[str]) -> Iterable[NativeStatus]:
        """How jobs bjobs has forgotten ended: bhist, which reads the event files LSF still has
        (-n 0: all of them), then bacct for those bhist has no record of at all, since event
        files are switched and pruned while lsb.acct keeps every finished job.

        A job none of the three knows is reported by the kit, after a few cycles, as VANISHED,
        which the kit's rule makes MISSING: Toil's word for a job that "disappeared from the
        scheduler" (its leader says MISSING of jobs its batch system no longer lists), as the
        Slurm backend says of jobs squeue and sacct both forgot. LOST is kept for a job LSF says
        ended while its host was unreachable (TERM_ZOMBIE) and for an LSF that stops answering: Toil reads
        LOST as a preemptible failure (a host went away), which it may retry without charging the
        job a try, and nothing says a forgotten job was preempted."""
        stdout = self.run(Command(["bhist", "-l", "-n", "0", *backing_ids], empty_answers=EMPTY_ANSWERS))
        found = {status.backing_id: status for status in ended_jobs(stdout)}
        recorded = set(re.findall(r"^Job <(\d+)>", stdout, flags=re.MULTILINE))
        unrecorded = [backing_id for backing_id in backing_ids if backing_id not in recorded]
        if unrecorded:
            found.update((s.backing_id, s) for s in ended_jobs(self.run(Command(["bacct", "-l", *unrecorded], empty_answers=EMPTY_ANSWERS))))
        return found.values()

    # ---- capacity -----------------------------------------------------------------------------

    def _query_hosts(self) -> list[Host]:
        states = {line.split()[0]: line.split() for line in self.run(Command(["bhosts", "-w"])).splitlines()[1:] if line.strip()}
        gpus: dict[str, list[str]] = {}
        name = ""
        try:
            gpu_lines = self.run(Command(["lshosts", "-gpu"])).splitlines()[1:]
        except SchedulerError as error:  # a cluster without GPU support: no GPUs
            log.info("no GPUs from lshosts -gpu: %s", error.message)
            gpu_lines = []
        for line in gpu_lines:
            words = line.split()
            if len(words) == 6:
                name = words.pop(0)
            if len(words) == 5:
                gpus.setdefault(name, []).append(words[1])
        hosts = []
        for block in self.run(Command(["lshosts", "-l"])).split("HOST_NAME:")[1:]:
            lines = block.strip().splitlines()  # the name, then a header and its values
            name, shape = lines[0].strip(), dict(zip(lines[1].split(), lines[2].split(), strict=False))
            state = states.get(name, [name, "unknown", "-", "0", "0"])
            models = gpus.get(name, [])
            hosts.append(
                Host(
                    name=name,
                    state=state[1],
                    cores=int(shape.get("ncpus", "0")),
                    cores_used=int(state[4]) if state[4].isdigit() else 0,
                    memory=size_bytes(shape.get("maxmem", "-")),
                    memory_used=0,
                    disk=size_bytes(shape.get("maxtmp", "-")),
                    accelerators=tuple(AcceleratorRequest(count=models.count(m), kind="gpu", model=m) for m in sorted(set(models))),
                )
            )
        return hosts

    def _query_run_limit(self) -> float | None:
        """The RUNLIMIT (seconds) of the queue jobs go to by default, None where it has none."""
        queue = self.defaults.queue
        if not queue:
            found = re.search(r"^Default Queues:\s*(\S+)", self.run(Command(["bparams"])), flags=re.MULTILINE)
            if not found:
                return None
            queue = found.group(1)
        return run_limit(self.run(Command(["bqueues", "-l", queue])))

    def limits(self) -> Limits:
        hosts, _ = self._hosts.get(LIMITS_MAX_AGE, stale_ok=True)
        try:
            wall_time, _ = self._run_limit.get(LIMITS_MAX_AGE, stale_ok=True)
        except SchedulerError as error:  # bsub refuses a job over the limit all the same
            log.warning("no queue run limit from bqueues: %s", error.message)
            wall_time = None
        return limits_of(hosts, wall_time)

    def nodes(self) -> list[pb.Node]:
        return node_messages(self._hosts.get(self.poll_interval)[0])

    def node_types(self) -> list[pb.NodeType]:
        return node_type_messages(self._hosts.get(self.poll_interval)[0])
