"""Kubernetes, through the official client: a job is a batch/v1 Job; two watches (Jobs, pods) on
the service's label say what became of every job at once, never a call per job.

A job's Job is named from the service's identity and the job id (manifest.job_name), so a create
that is retried after a lost answer meets 409 AlreadyExists and is recognised by its labels
instead of making a second Job; a restarted service finds its Jobs by the same labels.

A job's output is its pod's log (logs.py): Kubernetes keeps stdout and stderr as one log, so
both streams answer with it. An ending is reported before anything of the job is deleted, so the
kit can quote the end of a failed job's log in its update.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from batchgate.driver import Driver, Ending, Job, JobEvents, Limits, OutputChunks, SchedulingStatus, SubmittedJob, Verdict
from batchgate.errors import SchedulerError
from batchgate.v1 import batchgate_pb2 as pb

from . import capacity, logs, manifest, status
from .calls import api_message, observed
from .manifest import LABEL_INSTANCE, LABEL_JOB_ID, Settings
from .watcher import Object, Watcher

log = logging.getLogger(__name__)

JOB_NAME_LABEL = "job-name"  # the job controller puts it on a Job's pods (batch.kubernetes.io/job-name too, from 1.27)
CREATE_WORKERS = 8  # creates in flight at once
TICK = 1.0  # seconds between looks at jobs that wait on a clock (start timeouts, a late pod)
POD_GRACE = 5.0  # seconds a failed Job waits for its pod's exit code before the pod is asked for
NODES_MAX_AGE = 30.0
HEALTH_NAME = "kubernetes-api"


@dataclass
class Tracked:
    """A job with the cluster that has not ended yet (as far as the service has reported)."""

    job_id: int
    name: str
    started: bool = False
    confirmed: bool = False  # the cluster has it (created, or found after a restart)
    problem_since: float | None = None  # monotonic; when its container first could not start
    failed_since: float | None = None  # monotonic; when its Job failed without the pod's last word


class KubernetesDriver(Driver):
    kind = "k8s"
    options_field = "kubernetes"
    keeps_output = True  # the pod's log (stdout and stderr as one), see output()
    one_log = True

    def __init__(self, api: client.ApiClient, settings: Settings, *, start_timeout: float = 300.0, api_timeout: float = 300.0) -> None:
        self.api = api
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.settings = settings
        self.start_timeout = start_timeout
        self.api_timeout = api_timeout
        self._unanswered_since: dict[int, float] = {}  # job id -> monotonic; its create has had no answer
        self._tracked: dict[int, Tracked] = {}
        self._pod_by_job: dict[str, Object] = {}  # Job name -> its newest pod (backoffLimit 0: one)
        self._lock = threading.RLock()
        self._gone = threading.Condition(self._lock)  # notified when a Job leaves the cache
        self._pool = ThreadPoolExecutor(CREATE_WORKERS, thread_name_prefix="k8s-create")
        self._stop = threading.Event()

    # ---- lifecycle ----------------------------------------------------------------------------

    def attach(self, events: JobEvents, instance_id: str) -> None:
        super().attach(events, instance_id)
        selector = f"{LABEL_INSTANCE}={instance_id}"
        where = {"backend": self.name, "selector": selector, "namespace": self.settings.namespace}
        self.jobs = Watcher("jobs", self.batch.list_namespaced_job, on_event=self._on_job, **where)
        self.pods = Watcher("pods", self.core.list_namespaced_pod, on_event=self._on_pod, **where)
        self._nodes = capacity.NodeCache(self.core, NODES_MAX_AGE, self.name)
        self.jobs.start()
        self.pods.start()
        threading.Thread(target=self._tick, name="k8s-tick", daemon=True).start()

    def close(self) -> Sequence[int]:
        self._stop.set()
        self.jobs.stop()
        self.pods.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        return ()

    def health(self) -> dict[str, bool]:
        """"kubernetes-api": both watches are answered (a watch in back-off means the service
        cannot see its jobs end)."""
        attached = hasattr(self, "jobs")  # the kit asks for the names before attaching
        return {HEALTH_NAME: attached and self.jobs.connected and self.pods.connected}

    # ---- capacity -----------------------------------------------------------------------------

    def limits(self) -> Limits:
        return capacity.limits(self._nodes.get(), self.settings.gpu_model_label)

    def nodes(self) -> list[pb.Node]:
        return capacity.nodes(self._nodes.get(fresh=True), self.pods.objects(), self.settings.gpu_model_label)

    def node_types(self) -> list[pb.NodeType]:
        return capacity.node_types(self._nodes.get(fresh=True), self.settings.gpu_model_label)

    # ---- submitting ---------------------------------------------------------------------------

    def validate(self, job: Job) -> None:
        manifest.validate(job, self.settings)

    def submit(self, jobs: Sequence[Job]) -> Sequence[str | None]:
        return list(self._pool.map(self._create, jobs))

    def _create(self, job: Job) -> str | None:
        """The Job's name; None when the API server could not be reached (the kit offers the job
        again later, and the same name makes sure it is not created twice)."""
        body = manifest.job_manifest(job, instance_id=self.instance_id, service=self.name, settings=self.settings)
        name = body["metadata"]["name"]
        with self._lock:
            self._tracked[job.job_id] = Tracked(job.job_id, name)
        try:
            with observed(self.name, "create job"):
                response = self.batch.create_namespaced_job(self.settings.namespace, body, _preload_content=False)
            self.jobs.remember(json.loads(response.data))
        except ApiException as error:
            try:
                ours = error.status == 409 and self._is_ours(name, job.job_id)
            except ConnectionError as lookup:
                return self._not_now(job.job_id, name, str(lookup))
            if ours:
                log.info("job %d: Job %s exists already (an earlier create whose answer was lost)", job.job_id, name)
            elif error.status is not None and 400 <= error.status < 500 and error.status not in (408, 429):
                self._end(job.job_id, Ending(Verdict.NOT_STARTED, message=f"the API server refused Job {name}: {api_message(error)}"))
                return name
            else:
                return self._not_now(job.job_id, name, api_message(error))
        except Exception as error:  # no answer: a connection refused, reset or timed out
            return self._not_now(job.job_id, name, str(error))
        with self._lock:
            self._unanswered_since.pop(job.job_id, None)
            if job.job_id in self._tracked:
                self._tracked[job.job_id].confirmed = True
        self._judge(job.job_id)
        return name

    def _not_now(self, job_id: int, name: str, why: str) -> str | None:
        """A create with no answer: None (the kit tries again later), until the API server has
        been out of reach for --k8s-api-timeout; then the job ends NOT_STARTED, saying why."""
        with self._lock:
            self._tracked.pop(job_id, None)
            since = self._unanswered_since.setdefault(job_id, time.monotonic())
        if time.monotonic() - since < self.api_timeout:
            log.warning("creating Job %s failed, to be tried again: %s", name, why)
            return None
        with self._lock:
            del self._unanswered_since[job_id]
        message = f"the Kubernetes API server ({self.api.configuration.host}) did not answer for {self.api_timeout:g} s: {why}"
        self.events.ended(job_id, Ending(Verdict.NOT_STARTED, message=message))
        return name

    def _is_ours(self, name: str, job_id: int) -> bool:
        """Whether the Job already there under this name is this job's (else someone else's)."""
        try:
            with observed(self.name, "read job"):
                found = self.batch.read_namespaced_job(name, self.settings.namespace, _preload_content=False)
        except Exception as error:
            raise ConnectionError(f"reading Job {name}: {error}") from error  # tried again, with the create
        labels = (json.loads(found.data)["metadata"].get("labels")) or {}
        return labels.get(LABEL_INSTANCE) == self.instance_id and labels.get(LABEL_JOB_ID) == str(job_id)

    # ---- killing ------------------------------------------------------------------------------

    def kill(self, jobs: Sequence[SubmittedJob]) -> None:
        names = []
        with self._lock:
            for submitted in jobs:
                tracked = self._tracked.pop(submitted.job.job_id, None)
                names.append(tracked.name if tracked else submitted.backing_id)
        names = [name for name in names if name]
        for name in names:
            try:
                with observed(self.name, "delete job"):
                    self.batch.delete_namespaced_job(name, self.settings.namespace, propagation_policy="Foreground", _preload_content=False)
            except ApiException as error:
                if error.status != 404:
                    raise SchedulerError(self.name, f"deleting Job {name}: {api_message(error)}") from error
        # Foreground: the Job stays (with a deletionTimestamp) until its pods are gone.
        deadline = time.monotonic() + self.settings.kill_grace + 60
        with self._gone:
            while any(self.jobs.get(name) is not None for name in names):
                if not self._gone.wait(max(0.0, min(1.0, deadline - time.monotonic()))) and time.monotonic() > deadline:
                    left = [name for name in names if self.jobs.get(name) is not None]
                    raise SchedulerError(self.name, f"Jobs still there after deletion: {', '.join(left)}")

    # ---- adopting -----------------------------------------------------------------------------

    def adopt(self, jobs: Sequence[SubmittedJob]) -> None:
        with self._lock:
            for submitted in jobs:
                name = submitted.backing_id or manifest.job_name(submitted.job.job_id, self.instance_id, submitted.job.name)
                self._tracked[submitted.job.job_id] = Tracked(submitted.job.job_id, name, started=submitted.started_at is not None, confirmed=True)
        # Judged once the watches have listed what the cluster has: by _tick, or here if they have.
        if self.jobs.synced.is_set() and self.pods.synced.is_set():
            for submitted in jobs:
                self._judge(submitted.job.job_id)

    # ---- what the watches say -----------------------------------------------------------------

    def _on_job(self, kind: str, job: Object) -> None:
        job_id = job_id_of(job)
        if kind == "DELETED":
            with self._gone:
                self._gone.notify_all()
        if job_id is not None:
            self._judge(job_id, deleted=kind == "DELETED")

    def _on_pod(self, kind: str, pod: Object) -> None:
        owners = [ref["name"] for ref in pod["metadata"].get("ownerReferences") or [] if ref.get("kind") == "Job"]
        job_name = owners[0] if owners else (pod["metadata"].get("labels") or {}).get(JOB_NAME_LABEL, "")
        with self._lock:
            known = self._pod_by_job.get(job_name)
            if kind != "DELETED":
                self._pod_by_job[job_name] = pod
            elif known is not None and known["metadata"]["name"] == pod["metadata"]["name"]:
                del self._pod_by_job[job_name]
        job_id = job_id_of(pod)
        if job_id is not None:
            self._judge(job_id)

    def _pod_of(self, name: str) -> Object | None:
        with self._lock:
            return self._pod_by_job.get(name)

    def _judge(self, job_id: int, *, deleted: bool = False) -> None:
        """Look at a job's Job and pod, and report what changed. An ending is reported outside
        the lock: the kit reads a failed job's log then, through the API."""
        ended = self._judged(job_id, deleted)
        if ended is not None:
            self._end(job_id, ended)

    def _judged(self, job_id: int, deleted: bool) -> Ending | None:
        with self._lock:
            tracked = self._tracked.get(job_id)
            if tracked is None:
                return None  # ended, killed, or another service's
            job = self.jobs.get(tracked.name)
            if job is None:
                if deleted or (tracked.confirmed and self.jobs.synced.is_set()):
                    return Ending(Verdict.CANCELLED if deleted else Verdict.VANISHED, message=gone_message(tracked.name, deleted))
                return None
            pod = self._pod_of(tracked.name)
            began = status.started_at(pod)
            if began is not None and not tracked.started:
                tracked.started = True
                self.events.started(job_id, backing_id=tracked.name, at=began)
            ended = status.ending(job, pod)
            if ended is not None:
                return ended
            if status.true_conditions(job).get("Failed"):
                tracked.failed_since = tracked.failed_since or time.monotonic()
            problem = status.start_problem(pod)
            tracked.problem_since = (tracked.problem_since or time.monotonic()) if problem else None
            return None

    def _end(self, job_id: int, ended: Ending) -> None:
        with self._lock:
            tracked = self._tracked.pop(job_id, None)
            if tracked is None:
                return
            pod = self._pod_by_job.pop(tracked.name, None)
        self.events.ended(job_id, ended)
        # Nothing more is read of an ended job: its Job and pod leave the caches (they stay in the
        # cluster until ttlSecondsAfterFinished), so memory follows the live jobs only.
        self.jobs.forget(tracked.name)
        if pod is not None:
            self.pods.forget(pod["metadata"]["name"])

    def _tick(self) -> None:
        """Once the watches have listed the cluster, judge every job (adopted ones have had no
        event yet); then, every TICK, the clocks: start problems past their timeout, and failed
        Jobs whose pod never said why."""
        self.jobs.synced.wait()
        self.pods.synced.wait()
        with self._lock:
            everyone = list(self._tracked)
        for job_id in everyone:
            self._judge(job_id)
        while not self._stop.wait(TICK):
            now = time.monotonic()
            with self._lock:
                waiting = [item for item in self._tracked.values() if item.problem_since is not None or item.failed_since is not None]
            for item in waiting:
                if item.problem_since is not None and now - item.problem_since >= self.start_timeout:
                    self._give_up(item)
                elif item.failed_since is not None and now - item.failed_since >= POD_GRACE:
                    self._without_pod(item)

    def _give_up(self, item: Tracked) -> None:
        problem = status.start_problem(self._pod_of(item.name)) or "the container did not start"
        with self._lock:
            if self._tracked.pop(item.job_id, None) is None:
                return
        message = f"Job {item.name} could not start within {self.start_timeout:g} s: {problem}"
        self.events.ended(item.job_id, Ending(Verdict.NOT_STARTED, message=message, backing_id=item.name))
        try:  # after the report: an ending is reported while the job's pod is still there
            with observed(self.name, "delete job"):
                self.batch.delete_namespaced_job(item.name, self.settings.namespace, propagation_policy="Background", _preload_content=False)
        except ApiException as error:
            if error.status != 404:
                log.warning("deleting Job %s that could not start: %s", item.name, api_message(error))

    def _without_pod(self, item: Tracked) -> None:
        """A failed Job whose pod the watch has not shown ended: ask for it once."""
        try:
            pod = self._listed_pod(item.name)
        except Exception as error:
            log.warning("listing the pod of Job %s: %s", item.name, error)
            return
        job = self.jobs.get(item.name)
        if job is None:
            return
        self._end(item.job_id, status.ending(job, pod) or status.failed_without_pod(job))

    def _listed_pod(self, name: str) -> Object | None:
        """The newest pod of Job `name`, asked of the API server (not the watch's cache)."""
        selector = f"{LABEL_INSTANCE}={self.instance_id},{JOB_NAME_LABEL}={name}"
        with observed(self.name, "list pods"):
            listed = self.core.list_namespaced_pod(
                self.settings.namespace, label_selector=selector, _preload_content=False, _request_timeout=logs.READ_TIMEOUT
            )
        pods = json.loads(listed.data).get("items") or []
        return max(pods, key=lambda p: int(p["metadata"].get("resourceVersion", 0)), default=None)

    # ---- output -------------------------------------------------------------------------------

    def output(self, job: SubmittedJob, stream: int, tail_bytes: int, follow: bool) -> OutputChunks:
        """The job's pod log. Kubernetes keeps a container's stdout and stderr as one log, so
        both streams answer with it; a stream the job named a file for went to that file."""
        job_id = job.job.job_id
        name = job.backing_id or manifest.job_name(job_id, self.instance_id, job.job.name)
        target = logs.JobPod(job_id, name, find=lambda: self._newest_pod(job_id, name), live=lambda: self._is_tracked(job_id))
        to_stderr = stream == pb.OUTPUT_STREAM_STDERR
        named = job.job.stderr_path if to_stderr else job.job.stdout_path
        if named:
            return logs.FileOutput(named, target, "stderr" if to_stderr else "stdout", tail_bytes, follow)
        return logs.PodLog(self.core, self.settings.namespace, self.name, target, tail_bytes, follow)

    def _is_tracked(self, job_id: int) -> bool:
        with self._lock:
            return job_id in self._tracked

    def _newest_pod(self, job_id: int, name: str) -> Object | None:
        """A job's newest pod: from the watch while the job is live, else (an ended job's pod
        leaves the cache) asked of the API server."""
        if self._is_tracked(job_id):
            return self._pod_of(name)
        try:
            return self._listed_pod(name)
        except ApiException as error:
            raise SchedulerError(self.name, f"listing the pod of Job {name}: {api_message(error)}") from error
        except Exception as error:  # no answer: the API server cannot be reached
            raise SchedulerError(self.name, f"listing the pod of Job {name}: {error}") from error

    # ---- explaining ---------------------------------------------------------------------------

    def scheduling_status(self) -> SchedulingStatus:
        with self._lock:
            tracked = list(self._tracked.values())
        waiting: list[str] = []
        running = 0
        for item in tracked:
            pod = self._pod_of(item.name)
            why = status.unschedulable(pod)
            if why is not None:
                waiting.append(f"job {item.job_id} (Job {item.name}) cannot be scheduled: {why}")
            elif (problem := status.start_problem(pod)) is not None:
                waiting.append(f"job {item.job_id} (Job {item.name}) cannot start: {problem}")
            elif item.started:
                running += 1
        return SchedulingStatus(message="; ".join(waiting), deadlocked=bool(waiting) and running == 0 and len(waiting) == len(tracked))


def job_id_of(obj: Object) -> int | None:
    value = (obj["metadata"].get("labels") or {}).get(LABEL_JOB_ID, "")
    return int(value) if value.isdigit() else None


def gone_message(name: str, deleted: bool) -> str:
    if deleted:
        return f"Job {name} was deleted by someone other than batchgate"
    return f"Job {name} is no longer in the cluster (deleted, or removed after ttlSecondsAfterFinished)"

