"""Prometheus metrics, one set per process, named by Prometheus conventions (batchgate_ prefix,
base units, _total counters, histograms for durations). Every series is labelled with the
backend it speaks for, so one Prometheus can scrape every service and the gateway."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

from batchgate.endings import ExitReason, Outcome

from batchgate.store import JobState

if TYPE_CHECKING:
    from batchgate.service import BatchService

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)

JOBS_ISSUED = Counter("batchgate_jobs_issued_total", "Jobs accepted by IssueJob/IssueJobs.", ["backend"])
JOBS_ENDED = Counter("batchgate_jobs_ended_total", "Jobs whose update was published, by exit reason.", ["backend", "exit_reason"])
JOBS_FAILED = Counter("batchgate_jobs_failed_total", "Ended jobs with a non-zero exit status.", ["backend"])
JOBS_KILLED = Counter("batchgate_jobs_killed_total", "Jobs killed through KillJobs.", ["backend"])
JOBS_BY_STATE = Gauge("batchgate_jobs", "Live jobs by state (queued, submitted, running).", ["backend", "state"])
JOB_WALL_TIME = Histogram("batchgate_job_wall_time_seconds", "Wall time of ended jobs.", ["backend"], buckets=DURATION_BUCKETS)
QUEUE_WAIT = Histogram("batchgate_job_queue_wait_seconds", "Time from issue to start.", ["backend"], buckets=DURATION_BUCKETS)
UPDATE_LAG = Histogram(
    "batchgate_update_lag_seconds",
    "Time from the driver observing a job's end to its update being published to streams.",
    ["backend"],
    buckets=DURATION_BUCKETS,
)
STORE_ERRORS = Counter("batchgate_store_errors_total", "Job-store writes that failed (a full disk, a locked file).", ["backend"])
BACKEND_UP = Gauge("batchgate_backend_up", "Whether a gateway reaches each of its backends (1) or not (0).", ["backend", "target"])
STREAM_SUBSCRIBERS = Gauge("batchgate_stream_subscribers", "Open GetUpdatedJob streams.", ["backend"])
STREAMS_REFUSED = Counter(
    "batchgate_streams_refused_total", "GetUpdatedJob streams refused at a limit, by the flag that sets it.", ["backend", "limit"]
)
GRPC_REQUESTS = Counter("batchgate_grpc_requests_total", "gRPC requests handled, by method and status code.", ["backend", "method", "code"])
GRPC_DURATION = Histogram(
    "batchgate_grpc_request_duration_seconds", "Time to handle unary gRPC requests.", ["backend", "method"], buckets=DURATION_BUCKETS
)
SCHEDULER_COMMANDS = Counter(
    "batchgate_scheduler_commands_total", "Commands or API calls made to the scheduler, by operation and result.", ["backend", "operation", "result"]
)
SCHEDULER_LATENCY = Histogram(
    "batchgate_scheduler_command_duration_seconds", "Time the scheduler took to answer.", ["backend", "operation"], buckets=DURATION_BUCKETS
)


class ServiceMetrics:
    """One service's series with their labels bound once: labels() takes a lock and a lookup,
    and the recorder observes several series per job."""

    def __init__(self, backend: str) -> None:
        self.jobs_issued = JOBS_ISSUED.labels(backend)
        self.jobs_killed = JOBS_KILLED.labels(backend)
        self.queue_wait = QUEUE_WAIT.labels(backend)
        self.store_errors = STORE_ERRORS.labels(backend)
        self._jobs_ended = {reason: JOBS_ENDED.labels(backend, reason.name) for reason in ExitReason}
        self._jobs_failed = JOBS_FAILED.labels(backend)
        self._job_wall_time = JOB_WALL_TIME.labels(backend)
        self._update_lag = UPDATE_LAG.labels(backend)
        self._backend = backend
        self._calls: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def observe_call(self, method: str, code: str, seconds: float) -> None:
        """A unary gRPC call handled (code: a grpc.StatusCode name)."""
        series = self._calls.get((method, code))
        if series is None:
            series = GRPC_REQUESTS.labels(self._backend, method, code), GRPC_DURATION.labels(self._backend, method)
            self._calls[method, code] = series
        series[0].inc()
        series[1].observe(seconds)

    def observe_outcome(self, outcome: Outcome, *, lag: float) -> None:
        self._jobs_ended[ExitReason(outcome.exit_reason)].inc()
        if outcome.exit_status != 0:
            self._jobs_failed.inc()
        if outcome.wall_time is not None:
            self._job_wall_time.observe(outcome.wall_time)
        self._update_lag.observe(max(0.0, lag))


def register_job_gauges(service: BatchService) -> None:
    """Gauges read when scraped (nothing to keep in step): live jobs from the service's table,
    and, for a gateway, whether each backend is reachable."""
    for state in (JobState.QUEUED, JobState.SUBMITTED, JobState.RUNNING):
        JOBS_BY_STATE.labels(service.name, state.value).set_function(lambda state=state: service.counts().get(state, 0))
    for target in service.driver.health():
        BACKEND_UP.labels(service.name, target).set_function(lambda target=target: float(service.driver.health().get(target, False)))
