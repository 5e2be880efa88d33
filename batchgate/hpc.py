"""What every command-line batch scheduler shares (Slurm, LSF).

After Funnel's compute/hpc_backend.go, a scheduler is mostly data: the submit command for a job,
one queue query and its parser, a history query for jobs that have left the queue, the cancel
command, and a table from native states to what they mean. `CommandLineDriver` does the rest:

- commands run from argv lists (never through a shell), with transient failures retried under
  exponential backoff; a failure that outlasts `command_timeout` becomes a SchedulerError that
  quotes the scheduler's own words, so nothing ever hangs;
- one poller thread runs ONE queue query per cycle for all live jobs, whatever their number,
  and every other reader (scheduling status, the kill wait) shares that answer;
- jobs are submitted from a small thread pool, so a slow submit command does not serialise;
- each submitted job carries a tag naming this service instance and the job, so a restarted
  service recognises what an earlier run had submitted, and a submission whose answer was lost
  (a timeout) is found in the queue rather than sent again.
"""

from __future__ import annotations

import abc
import collections
import enum
import logging
import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from batchgate import metrics
from batchgate.backoff import Backoff
from batchgate.driver import AcceleratorRequest, Driver, Ending, Job, JobEvents, Limits, SchedulingStatus, SubmittedJob, Verdict
from batchgate.errors import InvalidArgument, SchedulerError
from batchgate.v1 import batchgate_pb2 as pb

log = logging.getLogger(__name__)

KILL_CHECK_INTERVAL = 0.2
# A job the scheduler has no record of, in the queue or in its history, is reported MISSING
# only after this many poll cycles: a history database may record a job a little late.
MISSES_BEFORE_MISSING = 3
SUB_SECOND_WALL_TIME = 0.5
RAN_TO_THE_END = frozenset({Verdict.EXITED, Verdict.FAILED, Verdict.OUT_OF_MEMORY})
LIMITS_MAX_AGE = 300.0  # seconds; limits are asked at every issue, and hosts rarely change
SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Phase(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"


# A native state means the job waits, runs, or has ended with the given verdict (the kit's rule,
# batchgate/endings.py, makes the exit reason of it and the exit code).
StateTable = Mapping[str, Phase | Verdict]


@dataclass(frozen=True)
class NativeStatus:
    """One job as the scheduler describes it."""

    backing_id: str
    state: str  # the scheduler's own word, e.g. "RUNNING" or "OUT_OF_MEMORY"
    reason: str = ""  # why it waits or ended, e.g. "Resources"
    exit_code: int = 0
    signal: int = 0  # the signal that killed it, 0 if none did
    started_at: float | None = None  # epoch seconds, as the scheduler counts them
    ended_at: float | None = None
    tag: str = ""  # what the job carries to say whose it is (see CommandLineDriver.tag)
    run_time: float | None = None  # seconds it ran, where the scheduler says so itself (LSF's run_time)


@dataclass(frozen=True)
class Command:
    argv: Sequence[str]
    stdin: str | None = None
    # Fragments of a failing query's error output that mean "nothing matched" (no such job; it
    # has finished already): its output is taken as the answer.
    empty_answers: tuple[str, ...] = ()


class CommandFailed(Exception):
    """A scheduler command failed; `transient` when its answer says nothing either way (a
    parser that finds no job id where one must be), so it is retried like a timeout."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str, *, transient: bool = False) -> None:
        super().__init__(f"{argv[0]} exited {returncode}: {stderr}")
        self.stderr = stderr
        self.transient = transient


# Runs argv with stdin and a timeout in seconds; returns stdout. Raises CommandFailed, or
# subprocess.TimeoutExpired. Benchmarks wrap it to count the commands a driver runs.
Runner = Callable[[Sequence[str], str | None, float], str]


def run_command(argv: Sequence[str], stdin: str | None, timeout: float) -> str:
    try:
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, encoding="utf-8", errors="replace", timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise CommandFailed(argv, 127, f"{argv[0]}: command not found (is the scheduler's client installed?)") from None
    if done.returncode != 0:
        raise CommandFailed(argv, done.returncode, done.stderr.strip() or done.stdout.strip())
    return done.stdout


class CountingRunner:
    """A Runner that counts the commands it runs, by name: how benchmarks and tests see what a
    driver asks of its scheduler."""

    def __init__(self, runner: Runner = run_command) -> None:
        self.runner = runner
        self.commands: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def __call__(self, argv: Sequence[str], stdin: str | None, timeout: float) -> str:
        with self._lock:
            self.commands[argv[0]] += 1
        return self.runner(argv, stdin, timeout)


def job_script(job: Job) -> str:
    """A batch script for the scheduler's standard input that runs the job's command with
    `/bin/sh -c`, as Toil's grid-engine batch systems do, under `env` with the job's variables.

    Every name, value and the command arrive byte for byte and none is ever run by the script's
    shell: each is a single-quoted word handed to printf's %b, with backslashes and newlines
    escaped, so no line of the script holds anything of the job's but a quoted string, and no line
    can start with a directive (#SBATCH, or #BSUB, which bsub reads anywhere in the script). The
    `x` kept past printf and cut off again saves trailing newlines from `$(...)`."""

    def word(text: str) -> str:
        return shlex.quote(text.replace("\\", "\\\\").replace("\n", "\\n"))

    lines = ["#!/bin/sh"]
    arguments = []
    for index, (name, value) in enumerate([*job.environment.items(), ("", job.command)]):
        variable = f"batchgate_{index}"
        lines.append(f"{variable}=$(printf '%bx' {word(value)}) && {variable}=${{{variable}%x}}")
        arguments.append(f'"{name}=${variable}"' if name else f'"${variable}"')
    command = arguments.pop()
    lines.append(" ".join(["exec", "/usr/bin/env", "--", *arguments, "/bin/sh", "-c", command]))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Host:
    """One execution host as the scheduler describes it (a Slurm node in one partition, an LSF host)."""

    name: str
    state: str
    cores: int
    cores_used: int
    memory: int  # bytes
    memory_used: int
    disk: int = 0  # bytes of scratch; 0 where the site does not say
    accelerators: tuple[AcceleratorRequest, ...] = ()


def accelerator_messages(offered: Iterable[AcceleratorRequest]) -> list[pb.Accelerator]:
    return [pb.Accelerator(count=a.count, kind=a.kind, model=a.model) for a in offered]


def limits_of(hosts: Sequence[Host], max_wall_time: float | None = None) -> Limits:
    """The largest job some host can run: its cores, memory and disk, its GPUs by model."""
    if not hosts:
        return Limits()
    most: dict[tuple[str, str], int] = {}
    for host in hosts:
        for offered in host.accelerators:
            most[(offered.kind, offered.model)] = max(offered.count, most.get((offered.kind, offered.model), 0))
    return Limits(
        max_cores=max(host.cores for host in hosts),
        max_memory=max(host.memory for host in hosts),
        max_disk=max(host.disk for host in hosts) or None,
        max_wall_time=max_wall_time,
        accelerators=tuple(AcceleratorRequest(count=count, kind=kind, model=model) for (kind, model), count in most.items()),
    )


def node_messages(hosts: Iterable[Host]) -> list[pb.Node]:
    by_name = {host.name: host for host in hosts}  # a host may be listed more than once
    return [
        pb.Node(
            name=host.name,
            state=host.state,
            cores=host.cores,
            cores_used=host.cores_used,
            memory=host.memory,
            memory_used=host.memory_used,
            accelerators=accelerator_messages(host.accelerators),
        )
        for host in by_name.values()
    ]


def node_type_messages(hosts: Iterable[Host]) -> list[pb.NodeType]:
    shapes: dict[tuple[int, int, int, tuple[AcceleratorRequest, ...]], set[str]] = {}
    for host in hosts:
        shapes.setdefault((host.cores, host.memory, host.disk, host.accelerators), set()).add(host.name)
    return [
        pb.NodeType(cores=cores, memory=memory, disk=disk, accelerators=accelerator_messages(offered), count=len(names))
        for (cores, memory, disk, offered), names in shapes.items()
    ]


T = TypeVar("T")


class Snapshot(Generic[T]):
    """The latest answer of one query, shared by every caller that can use an answer `max_age`
    seconds old; concurrent callers wait for one fetch instead of each running their own."""

    def __init__(self, fetch: Callable[[], T]) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._value: T | None = None
        self._taken_at = float("-inf")  # monotonic time the query was started

    def get(self, max_age: float, *, stale_ok: bool = False) -> tuple[T, float]:
        """The answer and when its query started. With `stale_ok`, a failed fetch returns the
        previous answer (if any) and is tried again only `max_age` later."""
        with self._lock:
            if self._value is None or time.monotonic() - self._taken_at > max_age:
                taken_at = time.monotonic()
                try:
                    self._value = self._fetch()
                except SchedulerError as error:
                    if not (stale_ok and self._value is not None):
                        raise
                    log.warning("keeping an earlier answer: %s", error)
                self._taken_at = taken_at
            return self._value, self._taken_at

    def latest(self) -> T | None:
        return self._value


@dataclass
class _Watched:
    job_id: int
    since: float  # monotonic; a queue answer taken before this cannot know the job
    started: bool = False
    misses: int = 0


class CommandLineDriver(Driver):
    """A scheduler driven by its command-line tools. Subclasses supply the data and parsers."""

    # The job's stdout/stderr files (sbatch --output, bsub -oo), which this service reads for
    # GetJobOutput: on one machine as they are; on a cluster the kit's --output-dir must be a
    # directory the nodes and this service share.
    output_files = True

    states: ClassVar[StateTable]
    # Fragments of the scheduler's error output that mean "try again" (e.g. a timeout).
    transient_errors: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        *,
        poll_interval: float,
        command_timeout: float,
        submit_workers: int = 8,
        runner: Runner = run_command,
    ) -> None:
        self.poll_interval = poll_interval
        self.command_timeout = command_timeout
        self.runner = runner
        self._lock = threading.Lock()
        self._watched: dict[str, _Watched] = {}  # backing id -> job
        self._queue: Snapshot[dict[str, NativeStatus]] = Snapshot(self._query_queue)
        self._left_behind: dict[str, str] | None = None  # tag -> backing id, until the first submit
        self._unknown_states: set[str] = set()
        self.poll_cycles = 0  # how many the poller has run (benchmarks divide commands by it)
        self._closing = threading.Event()
        self._submitters = ThreadPoolExecutor(max_workers=submit_workers, thread_name_prefix=f"{self.kind}-submit")
        self._poller = threading.Thread(target=self._poll_loop, name=f"{self.kind}-poller", daemon=True)

    # ---- what a scheduler supplies ------------------------------------------------------------

    @abc.abstractmethod
    def submit_command(self, job: Job) -> Command:
        """The command that submits `job`, carrying `self.tag(job.job_id)`."""

    @abc.abstractmethod
    def parse_submitted(self, stdout: str) -> str:
        """The backing id in the submit command's output."""

    @abc.abstractmethod
    def queue_command(self) -> Command:
        """One query for every job this service may own, with its tag."""

    @abc.abstractmethod
    def parse_queue(self, stdout: str) -> Iterable[NativeStatus]: ...

    @abc.abstractmethod
    def history(self, backing_ids: Sequence[str]) -> Iterable[NativeStatus]:
        """How jobs that have left the queue ended (run commands with `self.run`)."""

    @abc.abstractmethod
    def cancel_command(self, backing_ids: Sequence[str]) -> Command: ...

    def never_starts(self, reason: str) -> bool:
        """Whether a job pending for `reason` can never start as the cluster stands."""
        return False

    def output_file(self, job: Job, path: str) -> str:
        # sbatch and bsub take a relative output path as relative to the job's working directory.
        return os.path.join(job.working_directory, path) if job.working_directory else path

    def tag(self, job_id: int) -> str:
        return f"batchgate:{self.instance_id}:{job_id}"

    def validate(self, job: Job) -> None:
        for name in job.environment:
            if not SHELL_NAME.fullmatch(name):
                # /bin/sh, which runs the command, does not pass such a variable on
                raise InvalidArgument(
                    f"environment[{name!r}]", f"a {self.kind} job's command runs in /bin/sh, which only passes on names like NAME_1"
                )

    # ---- running commands ---------------------------------------------------------------------

    def run(self, command: Command) -> str:
        """Run a scheduler command and return its output. Transient failures are retried with
        exponential backoff for up to `command_timeout` seconds; then, or at once for any other
        failure, raises SchedulerError quoting the scheduler's last words."""
        return self._retrying(command.argv[0], lambda timeout: self._attempt(command, timeout))

    def _retrying(self, name: str, attempt: Callable[[float], T]) -> T:
        """`attempt(timeout)` until it succeeds, retried as `run` retries a command."""
        deadline = time.monotonic() + self.command_timeout
        backoff = Backoff()
        last_words = f"no answer within {self.command_timeout:g} s"
        while True:
            try:
                return attempt(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass  # keep the last words of an earlier attempt: they say more than a timeout
            except CommandFailed as failure:
                if not (failure.transient or any(fragment in failure.stderr for fragment in self.transient_errors)):
                    raise SchedulerError(self.kind, str(failure)) from None
                last_words = failure.stderr
            if self._closing.is_set():
                raise SchedulerError(self.kind, f"{name} failed as the service was stopping: {last_words}")
            if time.monotonic() + backoff.peek() >= deadline:
                raise SchedulerError(self.kind, f"{name} kept failing for {self.command_timeout:g} s: {last_words}")
            self._closing.wait(backoff.next())

    def _attempt(self, command: Command, timeout: float) -> str:
        operation = command.argv[0]
        started = time.monotonic()
        result = "error"
        try:
            output = self.runner(command.argv, command.stdin, timeout)
            result = "ok"
            return output
        except subprocess.TimeoutExpired:
            result = "timeout"
            raise
        except CommandFailed as failure:
            if not any(fragment in failure.stderr for fragment in command.empty_answers):
                raise
            result = "ok"
            return ""
        finally:
            metrics.SCHEDULER_COMMANDS.labels(self.name, operation, result).inc()
            metrics.SCHEDULER_LATENCY.labels(self.name, operation).observe(time.monotonic() - started)

    def _query_queue(self) -> dict[str, NativeStatus]:
        return {status.backing_id: status for status in self.parse_queue(self.run(self.queue_command()))}

    # ---- Driver ---------------------------------------------------------------------------------

    def attach(self, events: JobEvents, instance_id: str) -> None:
        super().attach(events, instance_id)
        self._poller.start()

    def submit(self, jobs: Sequence[Job]) -> Sequence[str]:
        if self._left_behind is None:
            # The first batch after a start may hold jobs an earlier run submitted just before it
            # stopped, without recording it: take those back instead of running them twice.
            try:
                self._left_behind = self._tagged_jobs()
            except SchedulerError as error:
                if self._closing.is_set():
                    raise  # the kit keeps the jobs of a failed batch and submits them after the restart
                for job in jobs:
                    self._not_taken(job, error)
                return [""] * len(jobs)
        return list(self._submitters.map(self._submit_one, jobs))

    def _submit_one(self, job: Job) -> str:
        backing_id = self._left_behind.pop(self.tag(job.job_id), "") if self._left_behind else ""
        if not backing_id:
            try:
                backing_id = self._submit_exactly_once(job)
            except SchedulerError as error:
                if self._closing.is_set():
                    raise  # the kit keeps the jobs of a failed batch and submits them after the restart
                self._not_taken(job, error)
                return ""
        self._watch(backing_id, job.job_id)
        return backing_id

    def _submit_exactly_once(self, job: Job) -> str:
        """Submit `job` and return its backing id. A submit command that timed out or failed
        "transiently" may have been carried out all the same (the scheduler took the job and
        the answer was lost), so before each retry look for the job's tag in the queue: one
        job is never submitted twice."""
        command = self.submit_command(job)
        tag = self.tag(job.job_id)
        failed = False

        def submitted_already(timeout: float) -> str:
            queue = self.parse_queue(self._attempt(self.queue_command(), timeout))
            found = next((status.backing_id for status in queue if status.tag == tag), "")
            if found:
                log.info("job %d was submitted after all, as %s: not submitting it again", job.job_id, found)
            return found

        def attempt(timeout: float) -> str:
            nonlocal failed
            # A failed look is retried like a failed submission: the loop tells them apart.
            if failed and (found := submitted_already(timeout)):
                return found
            failed = True  # until the submission answers
            backing_id = self.parse_submitted(self._attempt(command, timeout))
            failed = False
            return backing_id

        try:
            return self._retrying(command.argv[0], attempt)
        except SchedulerError:
            if not failed:
                raise
            try:  # one last look: the last attempt too may have been carried out
                found = submitted_already(self.command_timeout)
            except (CommandFailed, subprocess.TimeoutExpired):
                found = ""
            if not found:
                raise
            return found

    def _not_taken(self, job: Job, error: SchedulerError) -> None:
        message = f"{self.kind} did not take the job: {error.message}"
        self.events.ended(job.job_id, Ending(Verdict.NOT_STARTED, message=message))

    def adopt(self, jobs: Sequence[SubmittedJob]) -> None:
        tagged = self._tagged_jobs() if any(not submitted.backing_id for submitted in jobs) else {}
        for submitted in jobs:
            job_id = submitted.job.job_id
            backing_id = submitted.backing_id or tagged.get(self.tag(job_id), "")
            if backing_id:
                self._watch(backing_id, job_id, started=submitted.started_at is not None)
            else:
                message = f"no {self.kind} job carries this job's tag {self.tag(job_id)!r}"
                self.events.ended(job_id, Ending(Verdict.VANISHED, message=message))

    def kill(self, jobs: Sequence[SubmittedJob]) -> None:
        backing_ids = [submitted.backing_id for submitted in jobs if submitted.backing_id]
        with self._lock:
            for backing_id in backing_ids:  # from now on the poller never reports them
                self._watched.pop(backing_id, None)
        if not backing_ids:
            return
        self.run(self.cancel_command(backing_ids))
        deadline = time.monotonic() + self.command_timeout
        while True:
            queue, _ = self._queue.get(max_age=0)
            alive = [queue[b] for b in backing_ids if b in queue and not isinstance(self.states.get(queue[b].state), Verdict)]
            if not alive:
                return
            if time.monotonic() > deadline:
                states = ", ".join(f"{status.backing_id} {status.state}" for status in alive)
                raise SchedulerError(self.kind, f"{self.kind} jobs still alive {self.command_timeout:g} s after cancelling them: {states}")
            self._closing.wait(KILL_CHECK_INTERVAL)

    def scheduling_status(self) -> SchedulingStatus:
        """From the poller's latest queue answer: no query of its own."""
        queue = self._queue.latest() or {}
        with self._lock:
            mine = [queue[b] for b in self._watched if b in queue]
        running = sum(1 for status in mine if self.states.get(status.state) is Phase.RUNNING)
        waiting = collections.Counter(
            status.reason or "no reason given" for status in mine if self.states.get(status.state) is Phase.PENDING
        )
        if not waiting:
            return SchedulingStatus(message=f"{running} running in {self.kind}, none waiting")
        reasons = ", ".join(f"{reason} ({count})" for reason, count in waiting.most_common())
        pending = sum(waiting.values())
        if running == 0 and all(self.never_starts(reason) for reason in waiting):
            return SchedulingStatus(
                message=f"none runs, and {pending} job(s) pending in {self.kind} can never start as it stands: {reasons}",
                deadlocked=True,
            )
        return SchedulingStatus(message=f"{running} running in {self.kind}; {pending} pending: {reasons}")

    def close(self) -> Sequence[int]:
        self._closing.set()
        self._submitters.shutdown(wait=True, cancel_futures=True)
        if self._poller.is_alive():
            self._poller.join(timeout=self.command_timeout + self.poll_interval)
        return ()

    # ---- watching -----------------------------------------------------------------------------

    def _watch(self, backing_id: str, job_id: int, *, started: bool = False) -> None:
        with self._lock:
            self._watched[backing_id] = _Watched(job_id, since=time.monotonic(), started=started)

    def _tagged_jobs(self) -> dict[str, str]:
        queue, _ = self._queue.get(max_age=0)
        return {status.tag: backing_id for backing_id, status in queue.items() if status.tag}

    def _poll_loop(self) -> None:
        while not self._closing.wait(self.poll_interval):
            self.poll_cycles += 1
            try:
                self.poll()
            except Exception:  # the poller must outlive any one bad cycle
                log.exception("polling %s failed", self.kind)

    def poll(self) -> None:
        """One cycle: one queue query for all watched jobs, a history query for those that left."""
        with self._lock:
            watched = dict(self._watched)
        if not watched:
            return
        try:
            queue, taken_at = self._queue.get(max_age=self.poll_interval)
        except SchedulerError as error:
            if not self._closing.is_set():  # stopping is no reason to fail jobs: the next run adopts them
                self._give_up(watched, error)
            return
        known = {backing_id: job for backing_id, job in watched.items() if job.since <= taken_at}
        statuses = {backing_id: queue[backing_id] for backing_id in known if backing_id in queue}
        gone = [backing_id for backing_id in known if backing_id not in queue]
        history_error = ""
        if gone:
            try:
                statuses.update((status.backing_id, status) for status in self.history(gone) if status.backing_id in known)
            except SchedulerError as error:
                history_error = f": {error.message}"
        for backing_id, job in known.items():
            status = statuses.get(backing_id)
            if status is not None:
                self._observe(backing_id, job, status)
                continue
            job.misses += 1
            if job.misses >= MISSES_BEFORE_MISSING:
                message = f"{self.kind} has no record of job {backing_id} any more{history_error}"
                self._end(backing_id, job, Ending(Verdict.VANISHED, message=message))

    def _observe(self, backing_id: str, job: _Watched, status: NativeStatus) -> None:
        meaning = self.states.get(status.state)
        if meaning is None:
            if status.state not in self._unknown_states:
                self._unknown_states.add(status.state)
                log.warning("%s job %s is in state %r, which batchgate does not know; still waiting", self.kind, backing_id, status.state)
        elif meaning is Phase.RUNNING and not job.started:
            job.started = True
            self.events.started(job.job_id, backing_id=backing_id, at=status.started_at)
        elif isinstance(meaning, Verdict):
            self._end(backing_id, job, self.ending(status, meaning))

    def _end(self, backing_id: str, job: _Watched, ending: Ending) -> None:
        with self._lock:
            if self._watched.pop(backing_id, None) is None:
                return  # killed meanwhile: never reported
        self.events.ended(job.job_id, ending)

    def _give_up(self, watched: Mapping[str, _Watched], error: SchedulerError) -> None:
        log.error("%s does not answer; failing the %d job(s) it holds: %s", self.kind, len(watched), error.message)
        for backing_id, job in watched.items():
            message = f"lost sight of {self.kind} job {backing_id} (it may still be running): {error.message}"
            self._end(backing_id, job, Ending(Verdict.UNKNOWABLE, message=message))

    def ending(self, status: NativeStatus, verdict: Verdict) -> Ending:
        wall_time = status.run_time
        if wall_time is None and status.started_at is not None and status.ended_at is not None:
            wall_time = status.ended_at - status.started_at
        if wall_time is not None:
            # Scheduler clocks tick in whole seconds: zero means it ran for under one, and half a
            # second is the best guess, unless it was stopped (perhaps before it ever ran).
            if wall_time <= 0:
                wall_time = SUB_SECOND_WALL_TIME if verdict in RAN_TO_THE_END else None
        detail = f" ({status.reason})" if status.reason else ""
        message = f"{self.kind} job {status.backing_id} ended {status.state}{detail}"
        if verdict is Verdict.OUT_OF_TIME:
            message += ": killed after exceeding its wall time"
        return Ending(verdict, exit_code=status.exit_code, signal=status.signal, wall_time=wall_time, message=message)
