"""The gateway is a driver of the kit: the kit gives it gateway ids, durable issue, request-key
dedupe, job sets, its own update log and resumable client streams, kill bookkeeping and SetEnv.
This driver chooses a backend for each job, forwards jobs and kills to it, follows one update
stream per backend (gateway/upstream.py), and fans the queries out.

A job's backing id here is "BACKEND:BACKEND_JOB_ID", which is all a restarted gateway needs to
follow the job again. Jobs go to a backend under the gateway's own job set and the request key
"INSTANCE:GATEWAY_JOB_ID", so a job submitted again after a crash is the same job there.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from batchgate.driver import (
    Driver,
    Ending,
    Job,
    JobEvents,
    Limits,
    SchedulingStatus,
    SubmittedJob,
    Verdict,
)
from batchgate.errors import BackendUnavailable, BatchgateError, InvalidArgument, NoOutput, UnknownNode, Unsupported
from batchgate.v1 import batchgate_pb2 as pb

from . import routing
from .backend import Backend, Connect
from .config import BackendAddress
from .forward import backend_spec
from .output import ForwardedOutput
from .upstream import Upstream

log = logging.getLogger(__name__)

T = TypeVar("T")
Described = TypeVar("Described", pb.Node, pb.NodeType)

KILL_TIMEOUT = 300.0  # KillJobs returns once the jobs are dead, which a scheduler may take a while to say
STARTS_POLL_SECONDS = 2.0


class GatewayDriver(Driver):
    kind = "gateway"
    routes = True

    def __init__(
        self, backends: Sequence[BackendAddress], *, default_backend: str, timeout: float, connect: Connect | None = None
    ) -> None:
        self._backends = [Backend(backend.name, backend.address, timeout=timeout, connect=connect) for backend in backends]
        self._default = default_backend or backends[0].name
        self._upstreams: dict[str, Upstream] = {}
        self._pool = ThreadPoolExecutor(max_workers=max(8, 4 * len(backends)), thread_name_prefix="gateway-fan-out")
        self._stopping = threading.Event()
        self._starts_watcher = threading.Thread(target=self._watch_starts, name="gateway-starts", daemon=True)

    def attach(self, events: JobEvents, instance_id: str) -> None:
        super().attach(events, instance_id)
        self._job_set = f"gateway-{instance_id}"
        self._upstreams = {backend.name: Upstream(backend, events, self._job_set) for backend in self._backends}
        # Reach every backend before serving, so the first jobs are routed by what each can run.
        upstreams = list(self._upstreams.values())
        for upstream, reached in zip(upstreams, self._pool.map(Upstream.connect, upstreams), strict=True):
            if not reached:
                log.warning(
                    "backend %s (%s) is not reachable yet; jobs for it fail UNAVAILABLE until it is",
                    upstream.backend.name,
                    upstream.backend.address,
                )
            upstream.start()
        self._starts_watcher.start()

    def close(self) -> Sequence[int]:
        self._stopping.set()
        self._starts_watcher.join(timeout=10)
        for upstream in self._upstreams.values():
            upstream.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for backend in self._backends:
            backend.close()
        return ()  # the jobs live on in the backends; the next run follows them again

    # ---- routing -----------------------------------------------------------------------------

    def limits(self) -> Limits:
        return routing.largest([backend.limits for backend in self._backends if backend.limits is not None])

    def validate(self, job: Job) -> None:
        routing.check_request(job, self._backends)

    def route(self, job: Job) -> str:
        return routing.choose(job, self._backends, self._default)

    def refusals(self, job: Job) -> list[pb.Shortfall]:
        return routing.refusals(job, self._backends)

    # ---- jobs --------------------------------------------------------------------------------

    def submit(self, jobs: Sequence[Job]) -> Sequence[str | None]:
        groups: dict[str, list[Job]] = defaultdict(list)
        for job in jobs:
            groups[job.backend].append(job)
        for name in [name for name in groups if name not in self._upstreams]:
            self._end_all(groups.pop(name), Verdict.NOT_STARTED, f"backend {name!r} is no longer behind this gateway")

        def forward(upstream: Upstream) -> list[str | None]:
            return self._forward(upstream, groups[upstream.backend.name])

        backing_ids: dict[int, str | None] = {}
        for name, forwarded in self._each(forward, groups).items():
            ids = [None] * len(groups[name]) if isinstance(forwarded, BatchgateError) else forwarded
            backing_ids.update(zip((job.job_id for job in groups[name]), ids, strict=True))
        return [backing_ids.get(job.job_id, "") for job in jobs]

    def _forward(self, upstream: Upstream, jobs: list[Job]) -> list[str | None]:
        """IssueJobs on the backend; the backing ids, None for jobs to offer again later."""
        backend = upstream.backend
        specs = [backend_spec(job, job_set=self._job_set, request_key=f"{self.instance_id}:{job.job_id}") for job in jobs]
        try:
            backend_ids = backend.call(backend.stub.IssueJobs, pb.IssueJobsRequest(specs=specs)).job_ids
        except BackendUnavailable as error:
            log.warning("%d job(s) for %s wait: %s", len(jobs), backend.name, error.message)
            return [None] * len(jobs)
        except BatchgateError as refusal:
            # The backend took none of them (IssueJobs is all or none): halve until the jobs it
            # refuses are alone (this also splits a batch too large for one message).
            if len(jobs) > 1:
                half = len(jobs) // 2
                return self._forward(upstream, jobs[:half]) + self._forward(upstream, jobs[half:])
            self._end_all(jobs, Verdict.NOT_STARTED, f"backend {backend.name!r} refused the job: {refusal.message}")
            return [""]
        upstream.learn(zip(backend_ids, (job.job_id for job in jobs), strict=True))
        return [f"{backend.name}:{backend_id}" for backend_id in backend_ids]

    def adopt(self, jobs: Sequence[SubmittedJob]) -> None:
        pairs: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for submitted in jobs:
            found = self._locate(submitted)
            if found is None:
                self._end_all(
                    [submitted.job], Verdict.UNKNOWABLE, f"its backend ({submitted.backing_id!r}) is no longer behind this gateway"
                )
            else:
                pairs[found[0]].append((found[1], submitted.job.job_id))
        for name, learned in pairs.items():
            self._upstreams[name].learn(learned)

    def kill(self, jobs: Sequence[SubmittedJob]) -> None:
        doomed: dict[str, list[int]] = defaultdict(list)
        for submitted in jobs:
            found = self._locate(submitted)
            if found is not None:
                doomed[found[0]].append(found[1])

        def kill_on(upstream: Upstream) -> pb.KillJobsResponse:
            request = pb.KillJobsRequest(job_ids=doomed[upstream.backend.name])
            return upstream.backend.call(upstream.backend.stub.KillJobs, request, timeout=KILL_TIMEOUT)

        unreached: dict[str, str] = {}
        for name, result in self._each(kill_on, doomed).items():
            if isinstance(result, BatchgateError):
                unreached[name] = result.message
            self._upstreams[name].forget(doomed[name], kill_when_back=name in unreached)
        if unreached:
            reasons = "; ".join(unreached.values())
            raise BackendUnavailable(
                next(iter(unreached)), f"{reasons}; its jobs are killed as soon as it is back, and never reported"
            )

    def output(self, job: SubmittedJob, stream: int, tail_bytes: int, follow: bool) -> ForwardedOutput:
        found = self._locate(job)
        if found is None:
            raise NoOutput(job.job.job_id, f"its backend ({job.backing_id!r}) is no longer behind this gateway")
        name, backend_id = found
        backend = self._upstreams[name].backend
        request = pb.GetJobOutputRequest(job_id=backend_id, stream=stream, tail_bytes=tail_bytes, follow=follow)
        return ForwardedOutput(backend, request)

    def _locate(self, submitted: SubmittedJob) -> tuple[str, int] | None:
        """(backend name, backend job id) from a backing id "BACKEND:ID", if that backend is here."""
        name, _, backend_id = submitted.backing_id.rpartition(":")
        return (name, int(backend_id)) if name in self._upstreams and backend_id.isdigit() else None

    def _end_all(self, jobs: Iterable[Job], verdict: Verdict, message: str) -> None:
        for job in jobs:
            self.events.ended(job.job_id, Ending(verdict, message=message))

    # ---- queries, fanned out -----------------------------------------------------------------

    def seconds_running(self) -> dict[int, float]:
        def running_on(upstream: Upstream) -> dict[int, float]:
            if not upstream.holds_jobs:
                return {}
            request = pb.ListRunningJobsRequest(job_set=self._job_set)
            return upstream.running(upstream.backend.call(upstream.backend.stub.ListRunningJobs, request).seconds_running)

        merged: dict[int, float] = {}
        for result in self._each(running_on).values():
            if not isinstance(result, BatchgateError):
                merged.update(result)
        return merged

    def _watch_starts(self) -> None:
        """Backends do not stream starts: poll them, so the kit's running counts are right."""
        while not self._stopping.wait(STARTS_POLL_SECONDS):
            self.seconds_running()

    def scheduling_status(self) -> SchedulingStatus:
        def status_on(upstream: Upstream) -> pb.GetSchedulingStatusResponse:
            request = pb.GetSchedulingStatusRequest(job_set=self._job_set)
            return upstream.backend.call(upstream.backend.stub.GetSchedulingStatus, request)

        parts: list[str] = []
        deadlocked = False
        for name, status in self._each(status_on).items():
            if isinstance(status, BatchgateError):
                parts.append(f"{name}: {status.message}")
            else:
                parts.append(f"{name}: {status.message or 'no jobs waiting'}")
                deadlocked = deadlocked or status.deadlocked
        return SchedulingStatus("; ".join(parts), deadlocked=deadlocked)

    def nodes(self) -> list[pb.Node]:
        return self._gather(lambda u: u.backend.call(u.backend.stub.GetNodes, pb.GetNodesRequest()).nodes)

    def node_types(self) -> list[pb.NodeType]:
        return self._gather(lambda u: u.backend.call(u.backend.stub.GetNodeTypes, pb.GetNodeTypesRequest()).node_types)

    def ignore_node(self, name: str, ignored: bool, backend: str = "") -> None:
        request = pb.IgnoreNodeRequest(name=name, unignore=not ignored)
        self._on_node(name, backend, lambda u: u.backend.call(u.backend.stub.IgnoreNode, request))

    def node_in_use(self, name: str, backend: str = "") -> int:
        request = pb.GetNodeInUseRequest(name=name)
        answers = self._on_node(name, backend, lambda u: u.backend.call(u.backend.stub.GetNodeInUse, request))
        return sum(answer.running_jobs for answer in answers)

    def _on_node(self, name: str, backend: str, call: Callable[[Upstream], T]) -> list[T]:
        """`call` on the backend named, or on every one (those without the node say NOT_FOUND);
        the answers of those that have it, or the error that says why none does."""
        if backend and backend not in self._upstreams:
            raise InvalidArgument("backend", f"this gateway has no backend named {backend!r}")
        results = self._each(call, [backend] if backend else None)
        answers = [result for result in results.values() if not isinstance(result, BatchgateError)]
        if answers:
            return answers
        errors = [result for result in results.values() if isinstance(result, BatchgateError)]
        for error in errors:
            if not isinstance(error, UnknownNode | Unsupported):
                raise error  # unreachable, say: the node may well be there
        if errors and all(isinstance(error, Unsupported) for error in errors):
            raise errors[0] if len(errors) == 1 else Unsupported(self.name, "no backend behind this gateway can do this for a node")
        raise UnknownNode(self.name if not backend else backend, name)

    def _gather(self, fetch: Callable[[Upstream], Iterable[Described]]) -> list[Described]:
        """Every reachable backend's nodes (or node types), each named by the backend it is on."""
        found: list[Described] = []
        for name, items in self._each(fetch).items():
            if not isinstance(items, BatchgateError):
                for item in items:
                    item.backend = name  # the name clients route by, whatever the backend calls itself
                    found.append(item)
        return found

    def backend_capabilities(self) -> list[pb.GetCapabilitiesResponse]:
        return [backend.capabilities for backend in self._backends if backend.capabilities is not None]

    def health(self) -> dict[str, bool]:
        return {backend.name: backend.available for backend in self._backends}

    def _each(self, call: Callable[[Upstream], T], names: Iterable[str] | None = None) -> dict[str, T | BatchgateError]:
        """`call` on each named backend (all by default), at once. A backend that is not
        reachable is not called; it, and one whose call fails, gives its error instead."""
        chosen = [self._upstreams[name] for name in (self._upstreams if names is None else names)]

        def attempt(upstream: Upstream) -> T | BatchgateError:
            if not upstream.backend.available:
                return BackendUnavailable(upstream.backend.name)
            try:
                return call(upstream)
            except BatchgateError as error:
                return error

        if len(chosen) == 1:  # the common case needs no hand-off to another thread
            return {chosen[0].backend.name: attempt(chosen[0])}
        return dict(zip((upstream.backend.name for upstream in chosen), self._pool.map(attempt, chosen), strict=True))
