"""The local backend: jobs run as processes on this machine, within a budget of cores, memory,
disk and GPUs (Toil's SingleMachineBatchSystem, done with pidfds and process-tree kills).

Scheduling is first fit in issue order: a job that does not fit now waits, and smaller jobs
behind it start if they fit (no head-of-line blocking).

Jobs start in the thread that submits them when they fit at once; jobs that get their turn
when another ends are started by a few launcher threads, not by the reaper that saw the end:
starting a process means waiting for it to exec, and when the reaper started jobs itself,
ended ones waited behind each start (18 of 20 slots held by zombies under load).
"""

from __future__ import annotations

import collections
import heapq
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import psutil

from batchgate.driver import (
    AcceleratorRequest,
    Driver,
    Ending,
    Job,
    JobEvents,
    Limits,
    SchedulingStatus,
    SubmittedJob,
    Verdict,
)
from batchgate.errors import format_bytes

from . import processes
from .budget import CORE_STEP, Budget, Grant
from .processes import JobProcess, Reaper
from .spawn import encode_environment

log = logging.getLogger(__name__)


Shape = tuple[float, int, int, tuple[AcceleratorRequest, ...]]

# Launcher threads: each waits while its process execs, so a couple per core keep the cores
# busy. (bench/local_throughput.py on 2 cores: 2, 4 and 8 launchers alike, within the noise.)
LAUNCHERS = 2 * (os.cpu_count() or 1)


def shape_of(job: Job) -> Shape:
    return (job.cores, job.memory, job.disk, job.accelerators)


@dataclass
class _Running:
    """A job holding its share of the budget: being started, or running."""

    job: Job
    grant: Grant | None  # None for a job adopted from an earlier run (its share is unknown)
    process: JobProcess | None = None  # None until a launcher has started it
    killing: bool = False
    launched: threading.Event = field(default_factory=threading.Event)  # started, or failed to
    deadline: float | None = None  # monotonic time its wall time runs out


class LocalDriver(Driver):
    kind = "local"
    # Jobs write their output straight to files (the kit names them when a job names none), which
    # this service reads for GetJobOutput; relative paths are relative to the service's directory.
    output_files = True

    def __init__(self, budget: Budget, *, kill_grace_seconds: float = 3.0) -> None:
        self.budget = budget
        self.kill_grace_seconds = kill_grace_seconds
        self._lock = threading.Lock()
        self._waiting: dict[Shape, collections.deque[Job]] = {}  # by shape, each in issue order
        self._running: dict[int, _Running] = {}
        self._deadlines: list[tuple[float, int]] = []  # heap of (deadline, job_id)
        self._closing = False
        self._reaper: Reaper | None = None
        self._launch_queue: queue.SimpleQueue[_Running | None] = queue.SimpleQueue()  # None: stop
        self._launchers = [
            threading.Thread(target=self._launcher_loop, name=f"local-launcher-{number}", daemon=True) for number in range(LAUNCHERS)
        ]
        # Jobs start from the service's environment, encoded once (see spawn.encode_environment).
        self._base_environment = encode_environment(os.environ)
        processes.keep_inherited_descriptors_from_jobs()

    # ---- Driver ------------------------------------------------------------------------------

    def attach(self, events: JobEvents, instance_id: str) -> None:
        super().attach(events, instance_id)
        self._reaper = Reaper(self._process_ended, self._expire_deadlines)
        for launcher in self._launchers:
            launcher.start()

    def limits(self) -> Limits:
        by_model: dict[str, int] = {}
        for gpu in self.budget.gpus:
            by_model[gpu.model] = by_model.get(gpu.model, 0) + 1
        return Limits(
            max_cores=self.budget.total_tenths / CORE_STEP,
            max_memory=self.budget.total_memory,
            max_disk=self.budget.total_disk,
            accelerators=tuple(
                AcceleratorRequest(count=count, kind="gpu", model=model, brand="nvidia", api="cuda") for model, count in by_model.items()
            ),
        )

    def submit(self, jobs: Sequence[Job]) -> Sequence[str]:
        with self._lock:
            for job in jobs:
                self._waiting.setdefault(shape_of(job), collections.deque()).append(job)
            starting = self._take_what_fits()
        for running in starting:  # here rather than in a launcher: one thread hand-off fewer
            self._launch(running)
        return [""] * len(jobs)  # the pid becomes the backing id when the job starts

    def kill(self, jobs: Sequence[SubmittedJob]) -> None:
        doomed: list[_Running] = []
        strays: list[_Running] = []
        with self._lock:
            ids = {submitted.job.job_id for submitted in jobs}
            for shape, queue in list(self._waiting.items()):
                kept = collections.deque(job for job in queue if job.job_id not in ids)
                if kept:
                    self._waiting[shape] = kept
                else:
                    del self._waiting[shape]
            for submitted in jobs:
                running = self._running.get(submitted.job.job_id)
                if running is not None:
                    running.killing = True
                    doomed.append(running)
                elif submitted.backing_id and (stray := self._find_process(submitted)) is not None:
                    # Not ours in this run: a kill an earlier run could not finish. Its process
                    # still carries the job's marker.
                    strays.append(_Running(submitted.job, None, stray, killing=True))
        for stray_job in strays:
            assert self._reaper is not None and stray_job.process is not None
            self._reaper.watch(stray_job.process)  # kill_tree returns once the reaper saw it end
            stray_job.launched.set()
            doomed.append(stray_job)
        threads = [threading.Thread(target=self._kill, args=(running,)) for running in doomed]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def adopt(self, jobs: Sequence[SubmittedJob]) -> None:
        for submitted in jobs:
            job = submitted.job
            process = self._find_process(submitted)
            if process is None:
                message = "the job's process was gone when the service restarted; its exit status is unknown"
                self.events.ended(job.job_id, Ending(Verdict.UNKNOWABLE, message=message))
                continue
            with self._lock:
                # Counted against the budget while it lives.
                running = _Running(job, self.budget.acquire(job), process)
                running.launched.set()
                self._running[job.job_id] = running
                self._set_deadline(running)
            assert self._reaper is not None
            self._reaper.watch(process)
            log.info("re-adopted job %d (pid %d)", job.job_id, process.pid)

    def scheduling_status(self) -> SchedulingStatus:
        with self._lock:
            waiting = sum(len(queue) for queue in self._waiting.values())
            running = len(self._running)
            reasons: dict[str, int] = {}
            never = 0
            # Whether a job fits, and what it waits for, depends on its shape alone: one look
            # per shape, however many jobs wait.
            for queue in self._waiting.values():
                if not queue:
                    continue
                if not self.budget.fits_ever(queue[0]):
                    never += len(queue)
                    continue
                shortage = self.budget.shortage(queue[0])
                if shortage is not None:
                    resource = shortage.split(":")[0]
                    reasons[resource] = reasons.get(resource, 0) + len(queue)
            free = self._describe_free()
        if not waiting:
            return SchedulingStatus(f"{running} job(s) running, none waiting; free: {free}")
        parts = [f"{count} job(s) waiting for {resource}" for resource, count in sorted(reasons.items())]
        if never:
            parts.append(f"{never} job(s) larger than this machine's budget")
        message = f"{running} running; " + "; ".join(parts) + f"; free: {free}"
        return SchedulingStatus(message, deadlocked=bool(never) and never == waiting and running == 0)

    def close(self) -> Sequence[int]:
        with self._lock:
            self._closing = True  # start and report nothing more: the kit requeues what we stop
            for _ in self._launchers:
                self._launch_queue.put(None)  # after every launch already queued
        for launcher in self._launchers:
            if launcher.is_alive():
                launcher.join()
        with self._lock:
            stopping = list(self._running.values())
        for running in stopping:
            if running.process is not None:
                processes.kill_tree(running.process, self.kill_grace_seconds)
        if self._reaper is not None:
            self._reaper.stop()
        return [running.job.job_id for running in stopping]

    # ---- internals ---------------------------------------------------------------------------

    def _take_what_fits(self) -> list[_Running]:
        """Take the waiting jobs that fit, oldest first, skipping those that do not fit now,
        and give them their share; the caller launches them once it has let go of the lock.

        Jobs wait in one queue per shape (what they ask for): a shape whose oldest job does
        not fit has no job that fits, so each pass costs the number of shapes, not of jobs.
        Call with the lock held."""
        starting: list[_Running] = []
        while not self._closing:
            fitting = [queue for queue in self._waiting.values() if self.budget.can_fit(queue[0])]
            if not fitting:
                break
            queue = min(fitting, key=lambda queue: queue[0].job_id)
            job = queue.popleft()
            if not queue:
                del self._waiting[shape_of(job)]
            running = _Running(job, self.budget.acquire(job))
            self._running[job.job_id] = running
            starting.append(running)
        return starting

    def _hand_to_launchers(self, starting: list[_Running]) -> None:
        """Call with the lock held: close() stops the launchers once it has the lock, after
        every launch queued before."""
        for running in starting:
            self._launch_queue.put(running)

    def _launcher_loop(self) -> None:
        # A plain queue rather than an executor: its futures cost more per job than the rest of
        # the hand-off, and would swallow an unexpected error instead of logging it.
        while (running := self._launch_queue.get()) is not None:
            try:
                self._launch(running)
            except Exception as error:
                log.exception("starting job %d failed", running.job.job_id)
                if not running.launched.is_set():
                    self._start_failed(running, error)

    def _launch(self, running: _Running) -> None:
        """Start the job's process, or report why it could not start."""
        job, grant = running.job, running.grant
        assert grant is not None
        token = f"{self.instance_id}-{job.job_id}"
        try:
            environment = {**self._base_environment, **encode_environment(self._job_environment(job, grant))}
            process = processes.start(
                job.job_id, token, job.command, environment, job.working_directory, job.stdout_path, job.stderr_path
            )
        except (OSError, ValueError) as error:  # ValueError: a NUL byte validation let through
            self._start_failed(running, error)
            return
        with self._lock:
            running.process = process
            self._set_deadline(running)
            silent = running.killing or self._closing
        running.launched.set()
        if not silent:
            self.events.started(job.job_id, backing_id=str(process.pid))
        assert self._reaper is not None
        self._reaper.watch(process)  # after `started`: the job's end is reported after its start

    def _start_failed(self, running: _Running, error: Exception) -> None:
        with self._lock:
            self._running.pop(running.job.job_id, None)
            if running.grant is not None:
                self.budget.release(running.grant)
            self._hand_to_launchers(self._take_what_fits())
            silent = running.killing or self._closing
        running.launched.set()
        if not silent:
            message = f"could not start the job: {error}"
            self.events.ended(running.job.job_id, Ending(Verdict.NOT_STARTED, message=message))

    def _set_deadline(self, running: _Running) -> None:
        """Call with the lock held, once the job's process exists."""
        if running.job.wall_time is not None and running.process is not None:
            running.deadline = running.process.started_monotonic + running.job.wall_time
            heapq.heappush(self._deadlines, (running.deadline, running.job.job_id))
            assert self._reaper is not None
            self._reaper.wake()  # it may be waiting with no timer, or a later one

    def _kill(self, running: _Running) -> None:
        running.launched.wait()  # a job being started is killed once it has a process
        if running.process is not None:
            processes.kill_tree(running.process, self.kill_grace_seconds)

    @staticmethod
    def _job_environment(job: Job, grant: Grant) -> dict[str, str]:
        extra: dict[str, str] = {}
        if "OMP_NUM_THREADS" not in job.environment:
            # Libraries would otherwise start a thread per core of the machine, not of the job.
            extra["OMP_NUM_THREADS"] = str(max(1, grant.tenths // CORE_STEP))
        if grant.gpus:
            extra["CUDA_VISIBLE_DEVICES"] = ",".join(gpu.index for gpu in grant.gpus)
        return {**extra, **job.environment}

    def _process_ended(self, process: JobProcess, returncode: int | None) -> None:
        """Runs in the reaper thread."""
        with self._lock:
            running = self._running.pop(process.job_id, None)
            if running is None:
                return
            if running.grant is not None:
                self.budget.release(running.grant)
            self._hand_to_launchers(self._take_what_fits())  # the reaper stays free to reap
        if self._closing or running.killing:
            return
        wall_time = time.monotonic() - process.started_monotonic
        if returncode is None:
            message = "the job outlived a restart of the service, which cannot read its exit status"
            ending = Ending(Verdict.UNKNOWABLE, wall_time=wall_time, message=message)
        else:
            # A negative return code is a death by that signal, which we did not send: a kill we
            # asked for (KillJobs, a stop) never gets here.
            code, signal_number = max(returncode, 0), max(-returncode, 0)
            if running.deadline is not None and time.monotonic() >= running.deadline:
                message = f"killed after exceeding its wall time of {running.job.wall_time:g} s"
                ending = Ending(Verdict.OUT_OF_TIME, code, signal_number, wall_time, message)
            else:
                ending = Ending(Verdict.EXITED, code, signal_number, wall_time)
        self.events.ended(process.job_id, ending)

    def _expire_deadlines(self) -> float | None:
        """Runs in the reaper thread: kill jobs past their wall time; say when to look again."""
        now = time.monotonic()
        expired: list[JobProcess] = []
        with self._lock:
            while self._deadlines and self._deadlines[0][0] <= now:
                _, job_id = heapq.heappop(self._deadlines)
                running = self._running.get(job_id)
                if running is not None and running.process is not None and not running.killing:
                    expired.append(running.process)
            next_due = self._deadlines[0][0] - now if self._deadlines else None
        for process in expired:
            # Signal only: the reaper (this thread) must stay free to see the processes end.
            processes.signal_tree(process, signal.SIGKILL)
        return next_due

    def _find_process(self, submitted: SubmittedJob) -> JobProcess | None:
        """The job's root process, if it still runs and is really ours (pids get reused)."""
        if not submitted.backing_id.isdigit():
            return None
        token = f"{self.instance_id}-{submitted.job.job_id}"
        try:
            candidate = psutil.Process(int(submitted.backing_id))
            if candidate.environ().get(processes.MARKER_VARIABLE) != token or candidate.status() == psutil.STATUS_ZOMBIE:
                return None
            age = time.time() - candidate.create_time()
        except psutil.Error:
            return None
        return JobProcess(
            job_id=submitted.job.job_id, pid=candidate.pid, token=token, started_monotonic=time.monotonic() - age, child=False
        )

    def _describe_free(self) -> str:
        budget = self.budget
        text = f"{budget.free_tenths / CORE_STEP:g} cores, {format_bytes(budget.free_memory)} memory, {format_bytes(budget.free_disk)} disk"
        if budget.gpus:
            text += f", {len(budget.free_gpus)} of {len(budget.gpus)} GPUs"
        return text

