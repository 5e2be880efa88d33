"""IBM Spectrum LSF, as batchgate's command-line kit (batchgate/hpc.py) needs to know it.

bsub takes the job script on stdin and answers "Job <N> is submitted to queue <q>."; each job's
name is its tag, so one `bjobs -a -J 'batchgate:<instance>:*' -json -o ...` answers for every job
this service submitted; bhist answers for jobs bjobs has forgotten (after lsb.params'
CLEAN_PERIOD); bkill kills; lshosts and bhosts describe the hosts.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from batchgate.driver import AcceleratorRequest, Job, Limits, Verdict
from batchgate.errors import InvalidArgument, SchedulerError
from batchgate.hpc import (
    LIMITS_MAX_AGE,
    Command,
    CommandFailed,
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

# A job that ended EXIT is known by its termination reason (TERM_*) where batchgate has a meaning
# for it, else as EXIT: IBM's "Termination reasons displayed by bacct, bhist, and bjobs".
STATES: StateTable = {
    "PEND": Phase.PENDING,
    "PSUSP": Phase.PENDING,  # suspended (held) before it ever ran
    "WAIT": Phase.PENDING,  # a chunk job's member waiting its turn
    "PROV": Phase.PENDING,  # its host is being woken up
    "RUN": Phase.RUNNING,
    "USUSP": Phase.RUNNING,  # suspended while running: it has started, and may resume
    "SSUSP": Phase.RUNNING,
    "UNKWN": Phase.RUNNING,  # mbatchd lost contact with its host: it may still run
    "DONE": Verdict.EXITED,
    "EXIT": Verdict.FAILED,
    "TERM_MEMLIMIT": Verdict.OUT_OF_MEMORY,
    "TERM_SWAP": Verdict.OUT_OF_MEMORY,
    "TERM_RUNLIMIT": Verdict.OUT_OF_TIME,
    "TERM_DEADLINE": Verdict.OUT_OF_TIME,
    # Killed by us never gets here: a killed job is not watched any more.
    **dict.fromkeys(("TERM_OWNER", "TERM_ADMIN", "TERM_FORCE_OWNER", "TERM_FORCE_ADMIN", "TERM_PREEMPT"), Verdict.CANCELLED),
    **dict.fromkeys(("TERM_WINDOW", "TERM_LOAD", "TERM_BUCKET_KILL", "TERM_RC", "TERM_ORPHAN_SYSTEM"), Verdict.CANCELLED),
    **dict.fromkeys(("TERM_ZOMBIE", "TERM_REMOVE_HUNG_JOB"), Verdict.UNKNOWABLE),
    **dict.fromkeys(("TERM_CWD_NOTEXIST", "TERM_PRE_EXEC_FAIL", "TERM_DATA"), Verdict.NOT_STARTED),
}

TRANSIENT_ERRORS = ("LSF is down", "not responding", "Cannot connect to LSF", "Communication time out")
# What bjobs, bhist and bkill say when no job matches or a job has ended already: nothing to do.
EMPTY_ANSWERS = ("No job found", "No unfinished job found", "No matching job found", "is not found", "Job has already finished")
SUBMITTED = re.compile(r"Job <(\d+)> is submitted to (?:default )?queue <[^>]*>\.")
QUEUE_FIELDS = "jobid stat exit_code exit_reason pend_reason run_time job_name"  # the name last: it may hold the delimiter
DELIMITER = "|"
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


def seconds(text: str) -> float:
    """bjobs' run_time: "35 second(s)", or HH:MM:SS with -hms."""
    if ":" in text:
        return float(sum(int(part) * 60**power for power, part in enumerate(reversed(text.split(":")))))
    number = text.split(" ")[0]
    return float(number) if number.replace(".", "", 1).isdigit() else 0.0


def size_bytes(text: str) -> int:
    """lshosts' maxmem: 15.6G, 512M, 1024K (a bare number is in MB); 0 for "-"."""
    match = re.fullmatch(r"([\d.]+)([KMGTP]?)B?", text.strip())
    return int(float(match.group(1)) * 1024 ** ("KMGTP".index(match.group(2) or "M") + 1)) if match else 0


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
        json_output: bool = True,
        poll_interval: float = 1.0,
        command_timeout: float = 60.0,
        runner: Runner = run_command,
    ) -> None:
        super().__init__(poll_interval=poll_interval, command_timeout=command_timeout, runner=runner)
        self.defaults = pb.LsfOptions(queue=queue, project=project, extra_args=extra_args)
        self.time_limit = time_limit
        self.unit_for_limits = unit_for_limits.upper()
        self.memory_per_slot = memory_per_slot
        self.json_output = json_output  # bjobs -json came with LSF 10.1.0.2; before it, -o columns
        self._hosts: Snapshot[list[Host]] = Snapshot(self._query_hosts)

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
        in KB and rusage in MB (lsf.conf, else `lsadmin showconf lim`, unless given)."""
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

    def queue_command(self) -> Command:
        mine = ["bjobs", "-a", "-J", self.tag(0).removesuffix("0") + "*"]
        if self.json_output:
            return Command([*mine, "-json", "-o", QUEUE_FIELDS], empty_answers=EMPTY_ANSWERS)
        return Command([*mine, "-noheader", "-o", f"{QUEUE_FIELDS} delimiter='{DELIMITER}'"], empty_answers=EMPTY_ANSWERS)

    def parse_queue(self, stdout: str) -> Iterable[NativeStatus]:
        if not stdout.strip():
            return []  # no job matched
        if self.json_output:
            try:
                records = json.loads(stdout[stdout.index("{") : stdout.rindex("}") + 1])["RECORDS"]
            except (ValueError, KeyError) as error:
                raise CommandFailed(["bjobs"], 0, f"bjobs answered what is not its JSON ({error}): {stdout[:200]!r}", transient=True) from None
        else:  # "-" stands for an empty column
            names = QUEUE_FIELDS.upper().split()
            rows = (line.split(DELIMITER, len(names) - 1) for line in stdout.splitlines())
            records = [{name: "" if value == "-" else value for name, value in zip(names, row)} for row in rows if len(row) == len(names)]
        now = time.time()
        return [self._status(record, now) for record in records if "ERROR" not in record]

    @staticmethod
    def _status(record: dict[str, str], now: float) -> NativeStatus:
        state, exit_reason = record["STAT"], record.get("EXIT_REASON", "")
        keyword, _, words = exit_reason.partition(":")  # "TERM_RUNLIMIT: job killed after ..."
        if state == "EXIT" and keyword in STATES:
            state, exit_reason = keyword, words.strip()
        run_time = seconds(record.get("RUN_TIME", ""))
        return NativeStatus(
            backing_id=record["JOBID"],
            state=state,
            reason=record.get("PEND_REASON", "") or exit_reason,
            exit_code=int(record.get("EXIT_CODE") or 0),
            started_at=now - run_time if STATES.get(state) is Phase.RUNNING else None,
            run_time=run_time,
            tag=record.get("JOB_NAME", ""),
        )

    def history(self, backing_ids: Sequence[str]) -> Iterable[NativeStatus]:
        stdout = self.run(Command(["bhist", "-l", "-n", "0", *backing_ids], empty_answers=EMPTY_ANSWERS)).replace("\n" + " " * 21, "")
        for block in re.split(r"\n-{20,}\n", stdout):
            job_id = re.search(r"^Job <(\d+)>", block.strip())
            exited = re.search(r"Exited (with exit code|by signal) (\d+)", block)
            if not job_id or not (exited or "Done successfully" in block):
                continue  # not ended: bjobs will know it again, or it goes missing
            keyword = re.search(r"Completed <exit>; (TERM_\w+)", block)
            state = "DONE" if not exited else keyword.group(1) if keyword and keyword.group(1) in STATES else "EXIT"
            summary = re.search(r"PEND +PSUSP +RUN.*\n\s*(\d+)\s+(\d+)\s+(\d+)", block)
            yield NativeStatus(
                backing_id=job_id.group(1),
                state=state,
                reason=keyword.group(1) if keyword else "",
                exit_code=int(exited.group(2)) if exited and exited.group(1) == "with exit code" else 0,
                signal=int(exited.group(2)) if exited and exited.group(1) == "by signal" else 0,
                run_time=float(summary.group(3)) if summary else None,
            )

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

    def limits(self) -> Limits:
        hosts, _ = self._hosts.get(LIMITS_MAX_AGE, stale_ok=True)
        return limits_of(hosts)

    def nodes(self) -> list[pb.Node]:
        return node_messages(self._hosts.get(self.poll_interval)[0])

    def node_types(self) -> list[pb.NodeType]:
        return node_type_messages(self._hosts.get(self.poll_interval)[0])
