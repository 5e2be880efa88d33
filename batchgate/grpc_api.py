"""The gRPC face of a BatchService: proto in, proto out, errors mapped once (batchgate.errors)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc

from batchgate import metrics
from batchgate.errors import BatchgateError, InvalidArgument, abort
from batchgate.service import BatchService
from batchgate.v1 import batchgate_pb2 as pb
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[["BatchSystemServicer", Request, grpc.ServicerContext], Response]


def unary(method: Handler[Request, Response]) -> Handler[Request, Response]:
    """Count and time the call, and turn exceptions into statuses: ours keep their code and
    details, anything else is logged and becomes INTERNAL (the service keeps serving)."""

    @functools.wraps(method)
    def handle(self: BatchSystemServicer, request: Request, context: grpc.ServicerContext) -> Response:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return method(self, request, context)
        except BatchgateError as error:
            code = error.code
            abort(context, error)
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__} failed inside the service; see its log")
            raise  # not reached: abort raises
        finally:
            self.service.metrics.observe_call(method.__name__, code.name, time.perf_counter() - started)

    return handle


class BatchSystemServicer(pb_grpc.BatchSystemServicer):
    def __init__(self, service: BatchService, *, keepalive_seconds: float = 10.0) -> None:
        self.service = service
        self.keepalive_seconds = keepalive_seconds

    @unary
    def IssueJob(self, request: pb.IssueJobRequest, context: grpc.ServicerContext) -> pb.IssueJobResponse:
        (job_id,) = self.service.issue([request.spec], batched=False)
        return pb.IssueJobResponse(job_id=job_id)

    @unary
    def IssueJobs(self, request: pb.IssueJobsRequest, context: grpc.ServicerContext) -> pb.IssueJobsResponse:
        if not request.specs:
            return pb.IssueJobsResponse()
        return pb.IssueJobsResponse(job_ids=self.service.issue(request.specs, batched=True))

    @unary
    def KillJobs(self, request: pb.KillJobsRequest, context: grpc.ServicerContext) -> pb.KillJobsResponse:
        self.service.kill(request.job_ids)
        return pb.KillJobsResponse()

    @unary
    def ListIssuedJobs(self, request: pb.ListIssuedJobsRequest, context: grpc.ServicerContext) -> pb.ListIssuedJobsResponse:
        return pb.ListIssuedJobsResponse(job_ids=self.service.issued_job_ids(request.job_set))

    @unary
    def ListRunningJobs(self, request: pb.ListRunningJobsRequest, context: grpc.ServicerContext) -> pb.ListRunningJobsResponse:
        return pb.ListRunningJobsResponse(seconds_running=self.service.running_jobs(request.job_set))

    @unary
    def GetSchedulingStatus(
        self, request: pb.GetSchedulingStatusRequest, context: grpc.ServicerContext
    ) -> pb.GetSchedulingStatusResponse:
        return self.service.scheduling_status(request.job_set)

    @unary
    def SetEnv(self, request: pb.SetEnvRequest, context: grpc.ServicerContext) -> pb.SetEnvResponse:
        self.service.set_env(request.name, request.value if request.HasField("value") else None, request.job_set)
        return pb.SetEnvResponse()

    @unary
    def GetCapabilities(self, request: pb.GetCapabilitiesRequest, context: grpc.ServicerContext) -> pb.GetCapabilitiesResponse:
        return self.service.capabilities()

    @unary
    def CheckJob(self, request: pb.CheckJobRequest, context: grpc.ServicerContext) -> pb.CheckJobResponse:
        return self.service.check(request.spec)

    @unary
    def GetNodeTypes(self, request: pb.GetNodeTypesRequest, context: grpc.ServicerContext) -> pb.GetNodeTypesResponse:
        return pb.GetNodeTypesResponse(node_types=self.service.driver.node_types())

    @unary
    def GetNodes(self, request: pb.GetNodesRequest, context: grpc.ServicerContext) -> pb.GetNodesResponse:
        nodes = self.service.driver.nodes()
        if request.HasField("preemptible"):
            nodes = [node for node in nodes if node.preemptible == request.preemptible]
        return pb.GetNodesResponse(nodes=nodes)

    @unary
    def IgnoreNode(self, request: pb.IgnoreNodeRequest, context: grpc.ServicerContext) -> pb.IgnoreNodeResponse:
        self.service.driver.ignore_node(self._node_name(request), not request.unignore, self._node_backend(request))
        return pb.IgnoreNodeResponse()

    @unary
    def GetNodeInUse(self, request: pb.GetNodeInUseRequest, context: grpc.ServicerContext) -> pb.GetNodeInUseResponse:
        running = self.service.driver.node_in_use(self._node_name(request), self._node_backend(request))
        return pb.GetNodeInUseResponse(in_use=running > 0, running_jobs=running)

    @staticmethod
    def _node_name(request: pb.IgnoreNodeRequest | pb.GetNodeInUseRequest) -> str:
        if not request.name:
            raise InvalidArgument("name", "must name a node, as GetNodes does")
        return request.name

    def _node_backend(self, request: pb.IgnoreNodeRequest | pb.GetNodeInUseRequest) -> str:
        if request.backend and not self.service.driver.routes and request.backend not in (self.service.name, self.service.driver.kind):
            raise InvalidArgument("backend", f"this is backend {self.service.name!r}, not {request.backend!r}")
        return request.backend

    def GetUpdatedJob(self, request: pb.GetUpdatedJobRequest, context: grpc.ServicerContext) -> Iterator[pb.GetUpdatedJobResponse]:
        if request.after_sequence < 0:
            abort(context, InvalidArgument("after_sequence", f"must be >= 0, not {request.after_sequence}"))
        updates = self.service.updates
        cursor = request.after_sequence
        subscribers = metrics.STREAM_SUBSCRIBERS.labels(self.service.name)
        subscribers.inc()
        try:
            last_sent = time.monotonic()
            while context.is_active() and not updates.closed:
                batch, cursor = updates.read(cursor, request.job_set, wait=self.keepalive_seconds)
                if batch or time.monotonic() - last_sent >= self.keepalive_seconds:
                    yield pb.GetUpdatedJobResponse(updates=batch)  # empty: a keep-alive
                    last_sent = time.monotonic()
        finally:
            subscribers.dec()
