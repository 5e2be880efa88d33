"""The scheduler-independent half of every backend: the BatchSystem operations over a driver.

Life of a job:  issue -> QUEUED (durable, id returned) -> the dispatcher hands it to the driver
-> SUBMITTED -> the driver reports it started -> RUNNING -> the driver reports its outcome ->
the recorder appends an update to the log (ENDED), which every stream then delivers.
A kill at any point before ENDED makes it KILLED: it is taken from the dispatch queue or killed
through the driver, and whatever the driver reports of it afterwards is dropped. A kill the
driver could not make (its scheduler unreachable) stays KILLING in the store, and is made again
after a restart.

Three threads besides the RPC handlers: the dispatcher (feeds the driver in batches, so a slow
scheduler never holds up IssueJob), the recorder (turns driver reports into durable state and
published updates, batching commits under load), and the driver's own.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from batchgate import metrics
from batchgate.backoff import Backoff
from batchgate.driver import Driver, Job, Limits, SubmittedJob
from batchgate.endings import Ending, ExitReason, Outcome, outcome_of
from batchgate.errors import BatchgateError, InvalidArgument, JobNotFound, NoOutput
from batchgate.output import ONE_LOG_FEATURE, OutputFiles, OutputSettings, driver_stderr_tail, quoting_stderr, with_stderr_tail
from batchgate.jobspec import Defaults, check_env_name, check_env_value, check_text, limits_to_proto, resolve, shortfall, to_job
from batchgate.store import JobState, NewJob, NewUpdate, Store
from batchgate.updatelog import LoggedUpdate, UpdateLog
from batchgate.v1 import batchgate_pb2 as pb

log = logging.getLogger(__name__)

DISPATCH_BATCH = 500
BUSY_BATCH = 4  # reports in the last commit that mean the recorder is busy
GROUP_COMMIT_DELAY = 0.004


@dataclass
class LiveJob:
    job: Job
    state: JobState
    issued_at: float
    backing_id: str = ""
    started_at: float | None = None  # epoch seconds

    def submitted(self) -> SubmittedJob:
        return SubmittedJob(job=self.job, backing_id=self.backing_id, started_at=self.started_at)


@dataclass(frozen=True)
class IssueRequest:
    """One IssueJob or IssueJobs call's specs (`batched`: IssueJobs, whose errors name `specs[i]`)."""

    specs: Sequence[pb.JobSpec]
    batched: bool


@dataclass(frozen=True)
class _Started:
    job_id: int
    backing_id: str | None
    at: float


@dataclass(frozen=True)
class _Ended:
    job_id: int
    outcome: Outcome
    reported_at: float


@dataclass(frozen=True)
class _Checkpoint:
    key: str
    value: int


class BatchService:
    """What a BatchSystem server does, whatever the scheduler. Also the driver's JobEvents."""

    def __init__(
        self,
        driver: Driver,
        store: Store,
        *,
        name: str,
        defaults: Defaults = Defaults(),
        update_tail: int = 50_000,
        output: OutputSettings | None = None,
    ) -> None:
        self.driver = driver
        self.store = store
        self.name = name
        self.defaults = defaults
        self.updates = UpdateLog(store, tail_size=update_tail)
        self._jobs: dict[int, LiveJob] = {}
        self._jobs_lock = threading.Lock()
        self._issue_lock = threading.Lock()  # id allocation and request-key lookup
        self._submit_lock = threading.Lock()  # held while a batch is with the driver
        self._environment = store.environment()  # SetEnv's, by job set ('' for all)
        self._next_job_id = store.last_job_id() + 1
        self._dispatch_queue: collections.deque[int] = collections.deque()
        self._dispatch_ready = threading.Condition()
        self._reports: collections.deque[_Started | _Ended | _Checkpoint] = collections.deque()
        self._reports_ready = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.metrics = metrics.ServiceMetrics(name)
        # The files of jobs that name none, for a driver whose scheduler writes files (see output.py).
        self.output_files: OutputFiles | None = None
        if driver.output_files and output is not None and output.max_bytes > 0:
            self.output_files = OutputFiles(output, store.instance_id(), self.is_live)
        store.on_write_error = self.metrics.store_errors.inc
        metrics.register_job_gauges(self)

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Load what an earlier run left, hand the scheduler's jobs back to the driver, and go."""
        self._spawn(self._record_loop, "recorder")
        adopted: list[SubmittedJob] = []
        for stored in self.store.live_jobs():
            job = to_job(stored.job_id, pb.JobSpec.FromString(stored.spec))
            live = LiveJob(job, stored.state, stored.issued_at, stored.backing_id, stored.started_at)
            self._jobs[job.job_id] = live
            if stored.state is JobState.QUEUED:
                self._dispatch_queue.append(job.job_id)
            else:
                adopted.append(live.submitted())
        self.driver.attach(self, self.store.instance_id())
        if adopted:
            log.info("adopting %d job(s) left by an earlier run", len(adopted))
            self.driver.adopt(adopted)
        unconfirmed = [
            SubmittedJob(to_job(stored.job_id, pb.JobSpec.FromString(stored.spec)), stored.backing_id, stored.started_at)
            for stored in self.store.killing_jobs()
        ]
        if unconfirmed:
            log.info("making %d kill(s) again that an earlier run could not make", len(unconfirmed))
            self._spawn(lambda: self._make_unconfirmed_kills(unconfirmed), "unconfirmed-kills")
        if self._dispatch_queue:
            log.info("%d queued job(s) from an earlier run will be submitted", len(self._dispatch_queue))
        self._spawn(self._dispatch_loop, "dispatcher")
        if self.output_files is not None:
            self.output_files.start()

    def stop(self) -> None:
        """Graceful shutdown: finish recording, let the driver stop, keep every job for next time."""
        self._stopping.set()
        if self.output_files is not None:
            self.output_files.stop()
        with self._dispatch_ready:
            self._dispatch_ready.notify_all()
        with self._reports_ready:
            self._reports_ready.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
        requeue = [job_id for job_id in self.driver.close() if job_id in self._jobs]
        self._record(self._take_reports())
        if requeue:
            log.info("%d running job(s) stopped; they run again after the restart", len(requeue))
            self.store.set_requeued(requeue)
        self.updates.close()
        self.store.close()

    def _spawn(self, target: object, name: str) -> None:
        thread = threading.Thread(target=target, name=f"{self.name}-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    # ---- issue -------------------------------------------------------------------------------

    def resolve(self, spec: pb.JobSpec, field_prefix: str, limits: Limits | None = None) -> tuple[Job, pb.JobSpec]:
        """Validate a spec as issue would, without recording anything. Raises BatchgateError.

        Returns the driver's Job (id 0 until issued) and the resolved spec that is stored."""
        try:
            if spec.backend and spec.backend not in (self.name, self.driver.kind) and not self.driver.routes:
                raise InvalidArgument("backend", f"this is backend {self.name!r}; it cannot send jobs to {spec.backend!r}")
            resolved = resolve(
                spec,
                defaults=self.defaults,
                environment=self._environment_for(spec.job_set),
                options_field=self.driver.options_field,
                any_options=self.driver.routes,
            )
            job = to_job(0, resolved)
            self.driver.validate(job)
        except InvalidArgument as error:
            raise error.within(field_prefix) from None
        if not self.driver.routes:
            too_big = shortfall(job, limits or self.driver.limits(), self.name)
            if too_big is not None:
                raise too_big
        backend = self.driver.route(job)
        if backend == job.backend:
            return job, resolved
        resolved.backend = backend
        return dataclasses.replace(job, backend=backend), resolved

    def issue(self, specs: Sequence[pb.JobSpec], *, batched: bool) -> list[int]:
        """Record jobs durably and queue them; return their ids (all or none are issued).

        `batched` says the specs came as IssueJobs' `specs` (errors name `specs[i].field`)
        rather than IssueJob's `spec`."""
        (outcome,) = self.issue_each([IssueRequest(specs, batched)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def issue_each(self, requests: Sequence[IssueRequest]) -> list[list[int] | Exception]:
        """Issue several callers' jobs with one commit (a group commit): for each request, its
        jobs' ids, or why none of its jobs was issued (a request's bad spec fails that request
        alone; a failed commit, all of them)."""
        limits = self.driver.limits()  # once per group, not once per spec
        outcomes: list[list[int] | Exception] = []
        accepted: list[tuple[int, list[tuple[Job, pb.JobSpec]]]] = []  # (index in outcomes, jobs)
        for request in requests:
            try:
                resolved = [
                    self.resolve(spec, f"specs[{index}]" if request.batched else "spec", limits)
                    for index, spec in enumerate(request.specs)
                ]
            except Exception as error:  # noqa: BLE001 - this request's answer
                outcomes.append(error)
                continue
            accepted.append((len(outcomes), resolved))
            outcomes.append([])
        if not accepted:
            return outcomes
        now = time.time()
        fresh: list[Job] = []
        try:
            with self._issue_lock:
                keys = ((job.job_set, job.request_key) for _, resolved in accepted for job, _ in resolved if job.request_key)
                known = self.store.job_ids_for_keys(keys)
                rows: list[NewJob] = []
                for position, resolved in accepted:
                    ids = outcomes[position]
                    assert isinstance(ids, list)
                    for job, spec in resolved:
                        if (job.job_set, job.request_key) in known:
                            ids.append(known[job.job_set, job.request_key])
                            continue
                        job = dataclasses.replace(job, job_id=self._next_job_id)
                        self._next_job_id += 1
                        if job.request_key:
                            known[job.job_set, job.request_key] = job.job_id
                        ids.append(job.job_id)
                        fresh.append(job)
                        rows.append(NewJob(job.job_id, spec.SerializeToString(), job.job_set, job.request_key))
                if fresh:
                    self.store.insert_jobs(rows, now)
                    with self._jobs_lock:
                        for job in fresh:
                            self._jobs[job.job_id] = LiveJob(job, JobState.QUEUED, now)
        except Exception as error:  # noqa: BLE001 - nothing was recorded: every request's answer
            return [error if isinstance(outcome, list) else outcome for outcome in outcomes]
        if fresh:
            self.metrics.jobs_issued.inc(len(fresh))
            with self._dispatch_ready:
                self._dispatch_queue.extend(job.job_id for job in fresh)
                self._dispatch_ready.notify()
        return outcomes

    def check(self, spec: pb.JobSpec) -> pb.CheckJobResponse:
        try:
            job, _ = self.resolve(spec, "spec")
        except InvalidArgument:
            raise
        except BatchgateError as refusal:
            details = getattr(refusal, "resource", "")
            return pb.CheckJobResponse(
                accepted=False,
                message=refusal.message,
                # A router's refusal carries each of its backends' (`refusals`).
                refusals=getattr(refusal, "refusals", None)
                or [
                    pb.Shortfall(
                        backend=self.name,
                        resource=details,
                        requested=float(getattr(refusal, "requested", 0)),
                        available=float(getattr(refusal, "available", 0)),
                        message=refusal.message,
                    )
                ],
            )
        backend = job.backend if self.driver.routes else self.name
        return pb.CheckJobResponse(
            accepted=True, backend=backend, refusals=self.driver.refusals(job), message=f"backend {backend!r} can run this job"
        )

    # ---- dispatch ----------------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        backoff = Backoff()
        while not self._stopping.is_set():
            with self._dispatch_ready:
                self._dispatch_ready.wait_for(lambda: self._dispatch_queue or self._stopping.is_set())
            if self._stopping.is_set():
                return
            with self._submit_lock:
                batch = self._take_dispatch_batch()
                if not batch:
                    continue
                try:
                    backing_ids: Sequence[str | None] = self.driver.submit([self._with_output_files(live.job) for live in batch])
                except Exception as error:  # the driver could not reach its scheduler: keep the jobs, retry
                    log.warning("submitting %d job(s) failed: %s", len(batch), error)
                    backing_ids = [None] * len(batch)
                submitted: list[tuple[int, str]] = []
                deferred: list[int] = []  # not handed over: queued again, in order
                with self._jobs_lock:
                    for live, backing_id in zip(batch, backing_ids, strict=True):
                        if backing_id is None:
                            deferred.append(live.job.job_id)
                            continue
                        if live.state is JobState.QUEUED:  # not already started, ended or killed
                            live.state = JobState.SUBMITTED
                        # The driver may have reported the start (without an id) before we got here.
                        if backing_id and not live.backing_id:
                            live.backing_id = backing_id
                            submitted.append((live.job.job_id, backing_id))
                if submitted:
                    self.store.set_submitted(submitted)
                if deferred:
                    with self._dispatch_ready:
                        self._dispatch_queue.extendleft(reversed(deferred))
            if not deferred:
                backoff.reset()
                continue
            delay = backoff.next()
            log.warning("%d job(s) could not be submitted; retrying in %.1f s", len(deferred), delay)
            self._stopping.wait(delay)  # outside the submit lock: kills need not wait for the retry

    def _take_dispatch_batch(self) -> list[LiveJob]:
        batch: list[LiveJob] = []
        with self._dispatch_ready, self._jobs_lock:
            while self._dispatch_queue and len(batch) < DISPATCH_BATCH:
                live = self._jobs.get(self._dispatch_queue.popleft())
                if live is not None and live.state is JobState.QUEUED:  # killed ones are skipped
                    batch.append(live)
        return batch

    # ---- kill --------------------------------------------------------------------------------

    def kill(self, job_ids: Iterable[int]) -> None:
        """Kill jobs; returns once they are dead. Unknown and finished ids are ignored."""
        doomed: list[SubmittedJob] = []
        killed: list[int] = []
        with self._submit_lock:  # no job is half-way to the scheduler while we look
            with self._jobs_lock:
                for job_id in set(job_ids):
                    live = self._jobs.pop(job_id, None)
                    if live is None:
                        continue
                    if live.state is not JobState.QUEUED:
                        doomed.append(live.submitted())
                    live.state = JobState.KILLED
                    killed.append(job_id)
            # Queued ones never reached the scheduler: their kill is done. The others' is done
            # once the driver says so.
            doomed_ids = {submitted.job.job_id for submitted in doomed}
            if len(killed) > len(doomed_ids):
                self.store.set_killed([job_id for job_id in killed if job_id not in doomed_ids], time.time())
            if doomed_ids:
                self.store.set_killed(sorted(doomed_ids), time.time(), confirmed=False)
        self.metrics.jobs_killed.inc(len(killed))
        if doomed:
            self._kill_through_driver(doomed)

    def _make_unconfirmed_kills(self, doomed: list[SubmittedJob]) -> None:
        with contextlib.suppress(Exception):  # logged; made again after the next restart
            self._kill_through_driver(doomed)

    def _kill_through_driver(self, doomed: list[SubmittedJob]) -> None:
        """Kill jobs the driver has; once it has, the kill is confirmed in the store. Raises
        what the driver raised (the kill then stays unconfirmed, to be made again)."""
        try:
            self.driver.kill(doomed)
        except Exception as error:
            log.warning("killing %d job(s) is not confirmed yet: %s", len(doomed), error)
            raise
        self.store.set_killed([submitted.job.job_id for submitted in doomed], time.time())

    # ---- reports from the driver (JobEvents) -------------------------------------------------

    def started(self, job_id: int, *, backing_id: str | None = None, at: float | None = None) -> None:
        self._report(_Started(job_id, backing_id, at if at is not None else time.time()))

    def ended(self, job_id: int, ending: Ending) -> None:
        outcome = outcome_of(ending)
        if outcome.exit_reason is not ExitReason.FINISHED and self.driver.keeps_output and not self.driver.routes:
            # Why it failed, at once, from where the scheduler keeps its output (read here, in
            # the driver's thread: the recorder never waits on a scheduler).
            with self._jobs_lock:
                live = self._jobs.get(job_id)
            if live is not None:
                tail = driver_stderr_tail(self.driver, live.submitted())
                outcome = dataclasses.replace(outcome, message=quoting_stderr(outcome.message, tail))
        self._report(_Ended(job_id, outcome, time.monotonic()))

    def checkpoint(self, key: str, value: int) -> None:
        self._report(_Checkpoint(key, value))

    def checkpoints(self) -> dict[str, int]:
        return self.store.checkpoints()

    def _report(self, report: _Started | _Ended | _Checkpoint) -> None:
        with self._reports_ready:
            self._reports.append(report)
            self._reports_ready.notify()

    def _take_reports(self) -> list[_Started | _Ended | _Checkpoint]:
        with self._reports_ready:
            reports = list(self._reports)
            self._reports.clear()
        return reports

    def _record_loop(self) -> None:
        last_batch = 0
        backoff = Backoff()
        while not self._stopping.is_set():
            with self._reports_ready:
                self._reports_ready.wait_for(lambda: self._reports or self._stopping.is_set())
            if last_batch >= BUSY_BATCH:
                # Busy: let more reports gather so one commit and one stream message carry many
                # jobs. Only under load: a lone job's update is not held back.
                time.sleep(GROUP_COMMIT_DELAY)
            reports = self._take_reports()
            last_batch = len(reports)
            try:
                self._record(reports)
                backoff.reset()
            except Exception as error:  # a failed commit must not end the recorder; the reports are kept
                delay = backoff.next()
                log.error("recording %d job report(s) failed; trying again in %.1f s: %s", len(reports), delay, error)
                self._stopping.wait(delay)

    def _record(self, reports: list[_Started | _Ended | _Checkpoint]) -> None:
        if not reports:
            return
        started: list[tuple[int, str | None, float]] = []
        ended: list[tuple[LiveJob, _Ended]] = []
        checkpoints: dict[str, int] = {}
        # What the reports change of each job, as it was, should the commit fail.
        before: dict[int, tuple[LiveJob, JobState, float | None, str]] = {}
        waits: list[float] = []  # queue waits of the jobs that started
        with self._jobs_lock:
            for report in reports:
                if isinstance(report, _Checkpoint):
                    checkpoints[report.key] = report.value
                    continue
                live = self._jobs.get(report.job_id)
                if live is None:
                    continue  # killed, or reported twice
                before.setdefault(report.job_id, (live, live.state, live.started_at, live.backing_id))
                if isinstance(report, _Started):
                    if live.state in (JobState.QUEUED, JobState.SUBMITTED):
                        live.state = JobState.RUNNING
                        live.started_at = report.at
                        if report.backing_id:
                            live.backing_id = report.backing_id
                        started.append((report.job_id, report.backing_id, report.at))
                        waits.append(max(0.0, report.at - live.issued_at))
                else:
                    live.state = JobState.ENDED
                    del self._jobs[report.job_id]
                    ended.append((live, report))
        if not (started or ended or checkpoints):
            return
        try:
            self._publish(started, ended, checkpoints)
        except Exception:
            # Nothing was committed (a full disk, a locked store): the jobs are as they were, and
            # the reports wait at the head of the queue for the next try. Nothing is lost.
            with self._jobs_lock:
                for job_id, (live, state, started_at, backing_id) in before.items():
                    if live.state is JobState.KILLED:
                        continue  # killed meanwhile: gone for good
                    live.state, live.started_at, live.backing_id = state, started_at, backing_id
                    self._jobs.setdefault(job_id, live)
            with self._reports_ready:
                self._reports.extendleft(reversed(reports))
            raise
        for wait in waits:
            self.metrics.queue_wait.observe(wait)

    def _publish(
        self, started: list[tuple[int, str | None, float]], ended: list[tuple[LiveJob, _Ended]], checkpoints: dict[str, int]
    ) -> None:
        """Commit what the driver reported in one transaction, then let the streams see it."""
        logged: list[LoggedUpdate] = []
        for sequence, (live, report) in zip(self.updates.next_sequences(len(ended)), ended, strict=True):
            outcome = report.outcome
            message = outcome.message
            if outcome.exit_reason is not ExitReason.FINISHED and self.driver.output_files:
                # Why it failed, at once, in Toil's log and `batchgate watch`.
                message = with_stderr_tail(message, self._output_file(live.job, pb.OUTPUT_STREAM_STDERR))
            update = pb.UpdatedJob(
                sequence=sequence,
                job_id=live.job.job_id,
                exit_reason=int(outcome.exit_reason),
                exit_status=outcome.exit_status,
                backing_id=outcome.backing_id or live.backing_id,
                message=message,
                job_set=live.job.job_set,
                backend=live.job.backend if self.driver.routes else self.name,
            )
            if outcome.wall_time is not None:
                update.wall_time_seconds = outcome.wall_time
            logged.append(LoggedUpdate(sequence, live.job.job_set, update.SerializeToString()))
        self.store.record(
            started,
            [NewUpdate(item.sequence, live.job.job_id, item.job_set, item.body) for item, (live, _) in zip(logged, ended, strict=True)],
            time.time(),
            checkpoints,
        )
        self.updates.publish(logged)
        now = time.monotonic()
        for _, report in ended:
            self.metrics.observe_outcome(report.outcome, lag=now - report.reported_at)

    # ---- queries -----------------------------------------------------------------------------

    def issued_job_ids(self, job_set: str) -> list[int]:
        with self._jobs_lock:
            return sorted(job_id for job_id, live in self._jobs.items() if not job_set or live.job.job_set == job_set)

    def running_jobs(self, job_set: str) -> dict[int, float]:
        now = time.time()
        known_better = self.driver.seconds_running()
        with self._jobs_lock:
            if known_better is not None:
                return {
                    job_id: seconds
                    for job_id, seconds in known_better.items()
                    if job_id in self._jobs and (not job_set or self._jobs[job_id].job.job_set == job_set)
                }
            return {
                job_id: max(0.0, now - live.started_at)
                for job_id, live in self._jobs.items()
                if live.state is JobState.RUNNING and live.started_at is not None and (not job_set or live.job.job_set == job_set)
            }

    def job_sets_of(self, job_ids: Iterable[int]) -> dict[int, str]:
        """The job set of each of these jobs the service ever issued (unknown ids left out)."""
        wanted = set(job_ids)
        found: dict[int, str] = {}
        with self._jobs_lock:
            for job_id in wanted:
                live = self._jobs.get(job_id)
                if live is not None:
                    found[job_id] = live.job.job_set
        rest = wanted - found.keys()
        if rest:
            found.update(self.store.job_sets(rest))
        return found

    def counts(self) -> dict[JobState, int]:
        with self._jobs_lock:
            return collections.Counter(live.state for live in self._jobs.values())

    def live_counts(self) -> collections.Counter[tuple[str, str, JobState]]:
        """Live jobs by (backend, job set, state): the status page's table."""
        with self._jobs_lock:
            lives = list(self._jobs.values())
        routes = self.driver.routes
        return collections.Counter((live.job.backend if routes else self.name, live.job.job_set, live.state) for live in lives)

    def scheduling_status(self, job_set: str) -> pb.GetSchedulingStatusResponse:
        with self._jobs_lock:
            mine = [live for live in self._jobs.values() if not job_set or live.job.job_set == job_set]
        running = sum(1 for live in mine if live.state is JobState.RUNNING)
        status = self.driver.scheduling_status()
        return pb.GetSchedulingStatusResponse(
            message=status.message,
            queued_jobs=len(mine) - running,
            running_jobs=running,
            deadlocked=status.deadlocked,
        )

    def capabilities(self) -> pb.GetCapabilitiesResponse:
        capabilities = limits_to_proto(self.driver.limits(), self.name, self.driver.kind)
        capabilities.features.extend(self.driver.features())
        if self.driver.one_log:
            capabilities.features.append(ONE_LOG_FEATURE)
        if self.driver.options_field:  # so a gateway knows where a job's typed options may go
            capabilities.features.append(f"options:{self.driver.options_field}")
        capabilities.backends.extend(self.driver.backend_capabilities())
        return capabilities

    # ---- output ------------------------------------------------------------------------------

    def is_live(self, job_id: int) -> bool:
        """Whether the job is issued and has not ended (nor been killed)."""
        return job_id in self._jobs

    def find_job(self, job_id: int) -> tuple[SubmittedJob, bool]:
        """A job this service issued, live or not, and whether it is live. Raises JobNotFound."""
        with self._jobs_lock:
            live = self._jobs.get(job_id)
            if live is not None:
                return live.submitted(), True
        stored = self.store.job(job_id)
        if stored is None:
            raise JobNotFound(job_id)
        return SubmittedJob(to_job(job_id, pb.JobSpec.FromString(stored.spec)), stored.backing_id, stored.started_at), False

    def output_path(self, job: Job, stream: int) -> str:
        """Where this service reads the job's output `stream`, for a driver that writes files.
        Raises NoOutput when the job has no such file."""
        path = self._output_file(job, stream)
        if not path:
            raise NoOutput(
                job.job_id, "it names no output file, and this service keeps no output of such jobs (its --output-max-bytes is 0)"
            )
        return path

    def _output_file(self, job: Job, stream: int) -> str:
        placed = self._with_output_files(job)
        path = placed.stderr_path if stream == pb.OUTPUT_STREAM_STDERR else placed.stdout_path
        return self.driver.output_file(placed, path) if path else ""

    def _with_output_files(self, job: Job) -> Job:
        return job if self.output_files is None else self.output_files.place(job)

    def set_env(self, name: str, value: str | None, job_set: str = "") -> None:
        """Set (or, with None, remove) a variable for the later jobs of `job_set` ('': of every
        job set; a job set's own variables override those)."""
        check_env_name(name, "name")
        if value is not None:
            check_env_value(value, "value")
        check_text(job_set, "job_set")
        self.store.set_environment(job_set, name, value)
        variables = dict(self._environment.get(job_set, {}))
        if value is None:
            variables.pop(name, None)
        else:
            variables[name] = value
        # Swapped whole: issue reads it without a lock.
        self._environment = {**self._environment, job_set: variables}

    def _environment_for(self, job_set: str) -> dict[str, str]:
        """SetEnv's variables for a job of `job_set`."""
        everyone = self._environment.get("", {})
        own = self._environment.get(job_set) if job_set else None
        return {**everyone, **own} if own else everyone
