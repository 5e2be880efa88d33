"""AWS Batch, as a driver of the kit: jobs go in with SubmitJob, come back with DescribeJobs.

- Submission runs on a small thread pool (boto3 clients are thread-safe), so many jobs are in
  flight at once. Each job carries tags naming this service instance and the job, so a restarted
  service takes back what an earlier run submitted, and a submission whose answer was lost is
  looked for before it is made again.
- One poller makes ONE pass per cycle for every live job: DescribeJobs with 100 ids a call, and,
  only when a failed job's exit code is missing from it (moto leaves it out; AWS puts it there),
  one ListJobs of the failed jobs of that queue.
- Kill cancels queued jobs and terminates started ones, and returns once AWS reports them ended.
- Capacity comes from the queue's compute environments (capacity.py), cached for minutes.
- A job's output is read from CloudWatch Logs, where AWS Batch's awslogs log driver puts it
  (output.py): stdout and stderr together, in one log stream.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from batchgate.driver import Driver, Ending, Job, JobEvents, Limits, OutputChunks, SchedulingStatus, SubmittedJob, Verdict
from batchgate.errors import InvalidArgument, NoOutput, SchedulerError
from batchgate.hpc import Snapshot
from batchgate.v1 import batchgate_pb2 as pb

from . import capacity
from . import jobs as translate
from .aws import AnswerLost, Calls, Refused, Unreachable, make_client
from .capacity import ComputeEnvironments
from .jobs import Phase, Seen
from .output import LogStreamOutput, NamedFileOutput

log = logging.getLogger(__name__)

DESCRIBE_BATCH = 100  # DescribeJobs takes at most 100 ids
MISSES_BEFORE_VANISHED = 3  # AWS is eventually consistent: a new job may be missing for a moment
KILL_CHECK_INTERVAL = 0.25
CAPACITY_MAX_AGE = 300.0
LOOKUP_MAX_AGE = 30.0  # how long "no such queue/definition" is believed before asking again
CHECKPOINT = "awsbatch.submitting_since"  # epoch seconds before which no job in flight was submitted
CHECKPOINT_REFRESH = 600  # seconds
CLOCK_SLACK = 300  # seconds of clock difference between us and AWS that a census allows for
RESERVED_PREFIX = "AWS_BATCH"
HEALTH_NAME = "aws-batch"  # the gRPC health service's name for the AWS Batch endpoint


@dataclass(frozen=True)
class Settings:
    region: str = ""
    job_queue: str = ""
    job_definition: str = ""
    image: str = ""
    job_role_arn: str = ""
    owner_tag: str = ""
    endpoint_url: str = ""
    host_paths: tuple[str, ...] = ()  # mounted at the same path in the containers of our own job definitions
    retry_mode: str = "standard"
    max_attempts: int = 5
    poll_interval: float = 1.0
    kill_timeout: float = 120.0
    give_up_after: float = 900.0  # seconds without an answer before live jobs are reported LOST
    minimum_timeout: int = translate.AWS_MINIMUM_TIMEOUT
    default_wall_time: float | None = None
    max_disk: int | None = None
    max_gpus: int = 0
    submit_workers: int = 16


@dataclass
class _Watched:
    job_id: int
    queue: str
    started: bool = False
    misses: int = 0


class AwsBatchDriver(Driver):
    kind = "awsbatch"
    options_field = "aws_batch"
    keeps_output = True  # in CloudWatch Logs: see `output`
    one_log = True  # awslogs keeps stdout and stderr in one log stream

    def __init__(self, settings: Settings, client: Any = None) -> None:
        self.settings = settings
        def connect(service: str) -> Any:
            return make_client(
                region=settings.region,
                endpoint_url=settings.endpoint_url,
                retry_mode=settings.retry_mode,
                max_attempts=settings.max_attempts,
                pool_size=settings.submit_workers + 4,
                service=service,
            )

        self._client = client or connect("batch")
        self.calls = Calls(self._client, self.kind)
        self.logs = Calls(connect("logs"), self.kind)  # CloudWatch Logs, where jobs' output is
        self._lock = threading.Lock()
        self._census_lock = threading.Lock()
        self._watched: dict[str, _Watched] = {}  # AWS job id -> ours
        self._latest: dict[str, Seen] = {}  # the last pass's answer, for status and kill
        self._unreachable_since: float | None = None
        self._last_error = ""
        self._uncertain: set[int] = set()  # jobs whose submission may have landed unanswered
        self._left_behind: dict[str, dict[int, str]] = {}  # queue -> our job id -> AWS id, from a census
        self._definitions: dict[str, str] = {}  # image -> the job definition we registered for it
        self._known: dict[tuple[str, str], tuple[bool, float]] = {}  # (kind, name) -> exists, when asked
        self._checkpoint_written = 0.0
        self._census_since: int | None = None
        self._capacity: Snapshot[ComputeEnvironments] = Snapshot(self._query_capacity)
        self.poll_cycles = 0
        self._closing = threading.Event()
        self._submitters = ThreadPoolExecutor(max_workers=settings.submit_workers, thread_name_prefix="awsbatch-submit")
        self._poller = threading.Thread(target=self._poll_loop, name="awsbatch-poller", daemon=True)

    # ---- start-up -----------------------------------------------------------------------------

    def check(self) -> str:
        """Ask AWS for the service's queue and job definition. Raises Refused when one is missing
        or the credentials are refused; returns a warning (and the service serves on, jobs wait)
        when AWS cannot be reached now."""
        try:
            if not self._exists("queue", self.settings.job_queue):
                raise Refused(f"AWS Batch has no job queue {self.settings.job_queue!r}{self._where()}")
            if self.settings.job_definition and not self._exists("definition", self.settings.job_definition):
                raise Refused(f"AWS Batch has no active job definition {self.settings.job_definition!r}{self._where()}")
        except Unreachable as error:
            self._unreachable(error)
            return f"AWS Batch cannot be reached now; jobs will wait until it can: {error}"
        return ""

    def attach(self, events: JobEvents, instance_id: str) -> None:
        super().attach(events, instance_id)
        self.calls.backend = self.logs.backend = events.name
        # What the last run recorded, read before this run records anything of its own.
        self._census_since = events.checkpoints().get(CHECKPOINT)
        self._poller.start()

    # ---- validation ---------------------------------------------------------------------------

    def limits(self) -> Limits:
        known = self._capacity_now() or ComputeEnvironments()
        return known.limits(max_disk=self.settings.max_disk, max_gpus=self.settings.max_gpus)

    def features(self) -> Sequence[str]:
        # AWS Batch schedules no disk: a job's disk request is accepted and not enforced.
        return ("disk:not-enforced",)

    def validate(self, job: Job) -> None:
        for name in job.environment:
            if not translate.SHELL_NAME.fullmatch(name):
                raise InvalidArgument(f"environment[{name!r}]", "the job's command runs in /bin/sh, which only passes on names like NAME_1")
            if name.startswith(RESERVED_PREFIX):
                raise InvalidArgument(f"environment[{name!r}]", f"AWS Batch reserves names starting with {RESERVED_PREFIX}")
        options = job.options if isinstance(job.options, pb.AwsBatchOptions) else None
        try:
            if self._unreachable_since is not None:
                raise Unreachable(self._last_error)  # no issue waits on botocore's retries for an answer we know
            if options and options.job_queue and not self._exists("queue", options.job_queue):
                raise InvalidArgument("aws_batch.job_queue", f"AWS Batch has no job queue {options.job_queue!r}{self._where()}")
            if options and options.job_definition and not self._exists("definition", options.job_definition):
                raise InvalidArgument(
                    "aws_batch.job_definition", f"AWS Batch has no active job definition {options.job_definition!r}{self._where()}"
                )
        except (Unreachable, Refused) as error:
            log.info("cannot check job %s's AWS Batch options now (%s); it will wait", job.name or "", error)
        if options and options.image and options.job_definition:
            raise InvalidArgument("aws_batch.image", "name a job definition or an image, not both")

    # ---- submitting ---------------------------------------------------------------------------

    def submit(self, jobs: Sequence[Job]) -> Sequence[str | None]:
        self._refresh_checkpoint()
        return list(self._submitters.map(self._submit_one, jobs))

    def _submit_one(self, job: Job) -> str | None:
        queue = self._queue_of(job)
        try:
            backing_id = self._left_behind_by_earlier_run(job, queue)
            if not backing_id and job.job_id in self._uncertain:
                backing_id = self._look_for(job, queue)
            if not backing_id:
                backing_id = self._send(job, queue)
        except Unreachable as error:
            self._unreachable(error)
            return None  # the kit keeps it queued and offers it again
        except Refused as error:
            self.events.ended(job.job_id, Ending(Verdict.NOT_STARTED, message=f"AWS Batch did not take the job: {error}"))
            return ""
        self._reachable()
        with self._lock:
            self._watched[backing_id] = _Watched(job.job_id, queue)
        return backing_id

    def _send(self, job: Job, queue: str) -> str:
        request = translate.submit_request(
            job,
            queue=queue,
            definition=self._definition_of(job),
            instance_id=self.instance_id,
            owner=self.settings.owner_tag,
            timeout=translate.timeout_seconds(job, self.settings.default_wall_time, self.settings.minimum_timeout),
        )
        try:
            answer = self.calls("submit_job", **request)
        except AnswerLost:
            self._uncertain.add(job.job_id)
            raise
        self._uncertain.discard(job.job_id)
        backing_id: str = answer["jobId"]
        return backing_id

    def _look_for(self, job: Job, queue: str) -> str:
        """The AWS id of `job` if an earlier submission of it landed after all, else ''."""
        summaries = self.calls.pages(
            "list_jobs", "jobSummaryList", jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [translate.job_name(job)]}]
        )
        found = self._tagged(summary["jobId"] for summary in summaries).get(job.job_id, "")
        self._uncertain.discard(job.job_id)
        if found:
            log.info("job %d was submitted after all, as %s: not submitting it again", job.job_id, found)
        return found

    def _left_behind_by_earlier_run(self, job: Job, queue: str) -> str:
        """An earlier run may have submitted jobs just before it stopped, without recording
        them: the first time a queue is used, take a census of what this instance's tags hold
        there (jobs created since the last checkpoint), and take those back instead of
        submitting them again."""
        with self._census_lock:  # one census per queue, whatever the number of submitting threads
            census = self._left_behind.get(queue)
            if census is None:
                census = {}
                if self._census_since is not None:
                    created_after = str(int((self._census_since - CLOCK_SLACK) * 1000))
                    summaries = self.calls.pages(
                        "list_jobs", "jobSummaryList", jobQueue=queue, filters=[{"name": "AFTER_CREATED_AT", "values": [created_after]}]
                    )
                    census = self._tagged(summary["jobId"] for summary in summaries)
                    if census:
                        log.info("%d job(s) in %s carry this service's tags", len(census), queue)
                self._left_behind[queue] = census
            return census.pop(job.job_id, "")

    def _tagged(self, backing_ids: Iterable[str]) -> dict[int, str]:
        """Our job id -> AWS id, for those of `backing_ids` that carry this instance's tags."""
        found: dict[int, str] = {}
        for seen in self._describe(list(dict.fromkeys(backing_ids))):
            tags = seen.tags or {}
            if tags.get(translate.TAG_INSTANCE) == self.instance_id and tags.get(translate.TAG_JOB, "").isdigit():
                found[int(tags[translate.TAG_JOB])] = seen.backing_id
        return found

    def _refresh_checkpoint(self) -> None:
        """Record durably a time before which no job of ours can be in flight (see the census)."""
        now = time.time()
        if now - self._checkpoint_written > CHECKPOINT_REFRESH:
            self.events.checkpoint(CHECKPOINT, int(now))
            self._checkpoint_written = now

    def _queue_of(self, job: Job) -> str:
        options = job.options if isinstance(job.options, pb.AwsBatchOptions) else None
        return (options.job_queue if options else "") or self.settings.job_queue

    def _definition_of(self, job: Job) -> str:
        options = job.options if isinstance(job.options, pb.AwsBatchOptions) else None
        if options and options.job_definition:
            return options.job_definition
        if options and options.image:
            return self._registered_for(options.image)
        if self.settings.job_definition:
            return self.settings.job_definition
        return self._registered_for(self.settings.image)

    def _registered_for(self, image: str) -> str:
        """A job definition of our own for `image` (registered once per run, as Toil does),
        mounting the configured host paths at the same place in the container."""
        with self._lock:
            known = self._definitions.get(image)
        if known:
            return known
        paths = list(self.settings.host_paths)
        properties: dict[str, Any] = {
            "image": image,
            "command": ["/bin/true"],  # every job overrides it
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": str(translate.MIN_MEMORY_MIB)}],
            "volumes": [{"name": f"mnt{index}", "host": {"sourcePath": path}} for index, path in enumerate(paths)],
            "mountPoints": [{"sourceVolume": f"mnt{index}", "containerPath": path, "readOnly": False} for index, path in enumerate(paths)],
        }
        if self.settings.job_role_arn:
            properties["jobRoleArn"] = self.settings.job_role_arn
        request: dict[str, Any] = {
            "jobDefinitionName": f"batchgate-{self.instance_id}"[:128],
            "type": "container",
            "containerProperties": properties,
            "retryStrategy": {"attempts": 1},  # batchgate's client decides what to run again
        }
        if self.settings.owner_tag:
            request["tags"] = {translate.TAG_OWNER: self.settings.owner_tag}
        arn: str = self.calls("register_job_definition", **request)["jobDefinitionArn"]
        with self._lock:
            self._definitions[image] = arn
        return arn

    def _exists(self, kind: str, name: str) -> bool:
        """Whether the queue or active job definition `name` exists (a yes is kept; a no is asked
        again after LOOKUP_MAX_AGE)."""
        with self._lock:
            known = self._known.get((kind, name))
        if known is not None and (known[0] or time.monotonic() - known[1] < LOOKUP_MAX_AGE):
            return known[0]
        if kind == "queue":
            found = bool(self.calls("describe_job_queues", jobQueues=[name]).get("jobQueues"))
        else:
            answer = self.calls("describe_job_definitions", jobDefinitions=[name], status="ACTIVE")
            found = bool(answer.get("jobDefinitions"))
        with self._lock:
            self._known[(kind, name)] = (found, time.monotonic())
        return found

    def _where(self) -> str:
        place = self.settings.region or "the default region"
        return f" in {place}" + (f" at {self.settings.endpoint_url}" if self.settings.endpoint_url else "")

    # ---- watching -----------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self._closing.wait(self.settings.poll_interval):
            self.poll_cycles += 1
            try:
                self.poll()
            except Exception:  # the poller must outlive any one bad cycle
                log.exception("polling AWS Batch failed")

    def poll(self) -> None:
        """One pass for every live job."""
        with self._lock:
            watched = dict(self._watched)
        if not watched:
            if self._unreachable_since is not None:
                self._probe()
            return
        try:
            seen = {job.backing_id: job for job in self._describe(list(watched))}
            seen.update(self._exit_codes([job for job in seen.values() if self._lacks_exit_code(job)]))
        except (Unreachable, Refused) as error:
            self._unreachable(error)
            self._give_up_if_too_long(watched)
            return
        self._reachable()
        with self._lock:
            self._latest = seen
        for backing_id, job in watched.items():
            found = seen.get(backing_id)
            if found is None:
                job.misses += 1
                if job.misses >= MISSES_BEFORE_VANISHED:
                    self._end(backing_id, Ending(Verdict.VANISHED, message=f"AWS Batch has no record of job {backing_id} any more"))
                continue
            job.misses = 0
            if found.phase is Phase.RUNNING and not job.started:
                job.started = True
                self.events.started(job.job_id, backing_id=backing_id, at=found.started_at)
            elif found.phase is Phase.ENDED:
                self._end(backing_id, found.ending())

    def _probe(self) -> None:
        """With no job to ask about: whether AWS Batch answers again."""
        try:
            self.calls("describe_job_queues", jobQueues=[self.settings.job_queue])
        except (Unreachable, Refused) as error:
            self._unreachable(error)
        else:
            self._reachable()

    def _describe(self, backing_ids: Sequence[str]) -> list[Seen]:
        found: list[Seen] = []
        for start in range(0, len(backing_ids), DESCRIBE_BATCH):
            answer = self.calls("describe_jobs", jobs=list(backing_ids[start : start + DESCRIBE_BATCH]))
            found.extend(Seen.from_detail(detail) for detail in answer.get("jobs", []))
        return found

    @staticmethod
    def _lacks_exit_code(job: Seen) -> bool:
        return job.status == "FAILED" and job.exit_code is None and job.started_at is not None

    def _exit_codes(self, failed: list[Seen]) -> dict[str, Seen]:
        """The exit codes DescribeJobs left out, from ListJobs' summaries of the failed jobs of
        their queues (one listing per queue, pages until every one is found)."""
        if not failed:
            return {}
        wanted = {job.backing_id: job for job in failed}
        with self._lock:
            queues = {self._watched[b].queue for b in wanted if b in self._watched}
        found: dict[str, Seen] = {}
        for queue in queues:
            arguments: dict[str, Any] = {"jobQueue": queue, "jobStatus": "FAILED"}
            while len(found) < len(wanted):
                answer = self.calls("list_jobs", **arguments)
                for summary in answer.get("jobSummaryList", []):
                    job = wanted.get(summary["jobId"])
                    code = (summary.get("container") or {}).get("exitCode")
                    if job is not None and code is not None:
                        found[job.backing_id] = dataclasses.replace(job, exit_code=int(code))
                if not answer.get("nextToken"):
                    break
                arguments["nextToken"] = answer["nextToken"]
        return found

    def _end(self, backing_id: str, ending: Ending) -> None:
        with self._lock:
            job = self._watched.pop(backing_id, None)
        if job is not None:  # else killed meanwhile: never reported
            self.events.ended(job.job_id, ending)

    def _unreachable(self, error: Exception) -> None:
        with self._lock:
            if self._unreachable_since is None:
                self._unreachable_since = time.monotonic()
                log.warning("AWS Batch does not answer: %s", error)
            self._last_error = str(error)

    def _reachable(self) -> None:
        with self._lock:
            if self._unreachable_since is not None:
                log.info("AWS Batch answers again")
            self._unreachable_since = None
            self._last_error = ""

    def _give_up_if_too_long(self, watched: Mapping[str, _Watched]) -> None:
        with self._lock:
            since = self._unreachable_since
            error = self._last_error
        if since is None or time.monotonic() - since < self.settings.give_up_after or self._closing.is_set():
            return
        log.error("AWS Batch has not answered for %.0f s; reporting %d job(s) lost", time.monotonic() - since, len(watched))
        for backing_id in watched:
            message = f"lost sight of AWS Batch job {backing_id} (it may still be running): {error}"
            self._end(backing_id, Ending(Verdict.UNKNOWABLE, message=message))

    # ---- adopting and killing -----------------------------------------------------------------

    def adopt(self, jobs: Sequence[SubmittedJob]) -> None:
        with self._lock:
            for submitted in jobs:
                queue = self._queue_of(submitted.job)
                if submitted.backing_id:
                    self._watched[submitted.backing_id] = _Watched(submitted.job.job_id, queue, started=submitted.started_at is not None)
        for submitted in jobs:
            if not submitted.backing_id:  # submitted, yet with no AWS id recorded: nothing to follow
                message = f"no AWS Batch job id was recorded for job {submitted.job.job_id}"
                self.events.ended(submitted.job.job_id, Ending(Verdict.VANISHED, message=message))

    def kill(self, jobs: Sequence[SubmittedJob]) -> None:
        backing_ids = [submitted.backing_id for submitted in jobs if submitted.backing_id]
        with self._lock:
            for backing_id in backing_ids:  # from now on the poller never reports them
                self._watched.pop(backing_id, None)
            latest = dict(self._latest)
        if not backing_ids:
            return

        def stop(backing_id: str) -> None:
            known = latest.get(backing_id)
            try:
                if known is not None and known.phase is Phase.WAITING and known.status != "STARTING":
                    self.calls("cancel_job", jobId=backing_id, reason="cancelled through batchgate KillJobs")
                else:
                    self.calls("terminate_job", jobId=backing_id, reason="terminated through batchgate KillJobs")
            except Refused as error:  # e.g. a job AWS has forgotten: the wait below decides
                log.info("AWS Batch refused to stop job %s: %s", backing_id, error)

        try:
            # The submitting threads are free: the kit submits nothing while a kill is made.
            list(self._submitters.map(stop, backing_ids))
            self._wait_until_ended(backing_ids)
        except (Unreachable, Refused) as error:
            raise SchedulerError(self.kind, f"killing AWS Batch jobs {', '.join(backing_ids)}: {error}") from error

    def _wait_until_ended(self, backing_ids: list[str]) -> None:
        deadline = time.monotonic() + self.settings.kill_timeout
        terminated: set[str] = set()
        while True:
            alive = [job for job in self._describe(backing_ids) if job.phase is not Phase.ENDED]
            if not alive:
                return
            for job in alive:  # a job that started after it was cancelled must be terminated
                if job.status in ("STARTING", "RUNNING") and job.backing_id not in terminated:
                    self.calls("terminate_job", jobId=job.backing_id, reason="terminated through batchgate KillJobs")
                    terminated.add(job.backing_id)
            if time.monotonic() > deadline:
                states = ", ".join(f"{job.backing_id} {job.status}" for job in alive)
                raise SchedulerError(self.kind, f"AWS Batch jobs still alive {self.settings.kill_timeout:g} s after killing them: {states}")
            if self._closing.wait(KILL_CHECK_INTERVAL):
                raise SchedulerError(self.kind, "the service stopped before AWS Batch reported the jobs ended")

    # ---- output -------------------------------------------------------------------------------

    def output(self, job: SubmittedJob, stream: int, tail_bytes: int, follow: bool) -> OutputChunks:
        """From the job's CloudWatch Logs stream. AWS Batch's awslogs log driver keeps a job's
        stdout and stderr in ONE stream: STDOUT and STDERR both answer with all of it. A stream
        the job named a file for went to that file instead (output.py)."""
        job_id = job.job.job_id
        if not job.backing_id:
            raise NoOutput(job_id, "AWS Batch never took it, so it has no output")
        if self._unreachable_since is not None:  # no read waits on botocore's retries for an answer we know
            raise SchedulerError(self.kind, f"AWS cannot be reached now, so neither can job {job_id}'s output: {self._last_error}")
        options: dict[str, Any] = {
            "tail_bytes": tail_bytes,
            "follow": follow,
            "interval": self.settings.poll_interval,
            "backend": self.name,
        }

        def describe() -> Seen:
            return self._current(job_id, job.backing_id)

        name = "stderr" if stream == pb.OUTPUT_STREAM_STDERR else "stdout"
        named = job.job.stderr_path if name == "stderr" else job.job.stdout_path
        if not named:
            return LogStreamOutput(job_id, describe, self.logs, **options)
        path = os.path.join(job.job.working_directory, named)
        if not os.path.isabs(path):
            raise NoOutput(job_id, f"it sent its {name} to {named}, relative to its container's own directory, which this service cannot see")
        return NamedFileOutput(job_id, describe, path, name, **options)

    def _current(self, job_id: int, backing_id: str) -> Seen:
        """The job as the poller last saw it (while it watches it), else as DescribeJobs has it."""
        with self._lock:
            seen = self._latest.get(backing_id) if backing_id in self._watched else None
        if seen is not None:
            return seen
        found = self._describe([backing_id])
        if not found:
            raise NoOutput(job_id, f"AWS Batch has no record of job {backing_id} any more (it forgets ended jobs after a while)")
        return found[0]

    # ---- status and capacity ------------------------------------------------------------------

    def scheduling_status(self) -> SchedulingStatus:
        with self._lock:
            mine = [self._latest[b] for b in self._watched if b in self._latest]
            unreachable = self._unreachable_since is not None
            error = self._last_error
        if unreachable:
            return SchedulingStatus(message=f"AWS Batch cannot be reached; jobs wait until it can: {error}")
        by_status = collections.Counter(job.status for job in mine)
        running = by_status.pop("RUNNING", 0)
        if not by_status:
            return SchedulingStatus(message=f"{running} running in AWS Batch, none waiting")
        waiting = ", ".join(f"{count} {status}" for status, count in sorted(by_status.items()))
        message = f"{running} running in AWS Batch; waiting: {waiting}"
        if by_status.get("RUNNABLE"):
            reasons = collections.Counter(job.reason for job in mine if job.status == "RUNNABLE" and job.reason)
            said = "; ".join(f"{reason} ({count})" for reason, count in reasons.most_common(3))
            message += " (RUNNABLE: waiting for capacity in the queue's compute environments" + (f": {said})" if said else ")")
        return SchedulingStatus(message=message)

    def _query_capacity(self) -> ComputeEnvironments:
        try:
            return capacity.describe(self.calls, self.settings.job_queue, self._ec2)
        except Unreachable as error:
            self._unreachable(error)
            raise SchedulerError(self.kind, str(error)) from error
        except Refused as error:
            raise SchedulerError(self.kind, str(error)) from error

    def _ec2(self) -> Any:
        config = Config(region_name=self.settings.region or None, retries={"mode": self.settings.retry_mode, "max_attempts": 2})
        return boto3.session.Session().client("ec2", endpoint_url=self.settings.endpoint_url or None, config=config)

    def _capacity_now(self, max_age: float = CAPACITY_MAX_AGE) -> ComputeEnvironments | None:
        """The queue's compute environments (as last seen, while AWS does not answer), or None."""
        if self._unreachable_since is not None:
            return self._capacity.latest()  # no call waits on botocore's retries for an answer we know
        try:
            known, _ = self._capacity.get(max_age, stale_ok=True)
        except SchedulerError:
            return None
        return known

    def node_types(self) -> list[pb.NodeType]:
        known = self._capacity_now()
        return known.node_types() if known else []

    def nodes(self) -> list[pb.Node]:
        known = self._capacity_now(self.settings.poll_interval * 5)
        return known.nodes() if known else []

    def health(self) -> dict[str, bool]:
        """Whether AWS Batch answers (the store's health is the kit's); also the backend_up gauge."""
        return {HEALTH_NAME: self._unreachable_since is None}

    def close(self) -> Sequence[int]:
        self._closing.set()
        self._submitters.shutdown(wait=True, cancel_futures=True)
        if self._poller.is_alive():
            self._poller.join(timeout=60)
        return ()
