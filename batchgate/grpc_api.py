"""The gRPC face of a BatchService, on grpc's asyncio server: proto in, proto out, errors mapped
once (batchgate.errors).

Unary calls do their work (the store, the driver: both may block) in a thread pool and await it,
so the event loop only moves messages; IssueJob and IssueJobs go to one thread that records
concurrent calls with one commit (batchgate/grouped.py); streams are coroutines
(batchgate/streams.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import grpc
from google.protobuf import message_factory

from batchgate import metrics, output
from batchgate.admission import Gate
from batchgate.errors import BatchgateError, InvalidArgument, LimitExceeded, abort_async
from batchgate.grouped import Grouped
from batchgate.service import BatchService, IssueRequest
from batchgate.streams import Subscribers
from batchgate.v1 import batchgate_pb2 as pb

log = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["BatchSystem"]

Request = TypeVar("Request")
Response = TypeVar("Response")
Work = Callable[["BatchSystemServicer", Request], Response]
Handler = Callable[["BatchSystemServicer", Request, grpc.aio.ServicerContext], Awaitable[Response]]


def unary(work: Work[Request, Response]) -> Handler[Request, Response]:
    """An async handler that runs `work` in the servicer's thread pool (see `answer`)."""

    @functools.wraps(work)
    async def handle(self: BatchSystemServicer, request: Request, context: grpc.aio.ServicerContext) -> Response:
        pending = asyncio.get_running_loop().run_in_executor(self.calls, work, self, request)
        return await self.answer(work.__name__, context, pending)

    return handle


class BatchSystemServicer:
    def __init__(
        self,
        service: BatchService,
        subscribers: Subscribers,
        *,
        calls: Executor,
        store_readers: Executor,
        max_issue_batch: int,
        keepalive_seconds: float = 10.0,
    ) -> None:
        self.service = service
        self.subscribers = subscribers
        self.calls = calls  # runs every unary call's work
        self.store_readers = store_readers  # reads the store for streams that fell behind
        self.max_issue_batch = max_issue_batch
        self.keepalive_seconds = keepalive_seconds
        # Concurrent IssueJob(s) calls are recorded together: one thread, one commit per group.
        self.issuer = Grouped(service.issue_each, name=f"{service.name}-issuer")

    def close(self) -> None:
        self.issuer.close()

    async def answer(self, method: str, context: grpc.aio.ServicerContext, pending: Awaitable[Response]) -> Response:
        """`pending`'s response, the call counted and timed, and exceptions turned into
        statuses: ours keep their code and details, anything else is logged and becomes
        INTERNAL (the service keeps serving)."""
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return await pending
        except BatchgateError as error:
            code = error.code
            await abort_async(context, error)
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("%s failed", method)
            await context.abort(grpc.StatusCode.INTERNAL, f"{method} failed inside the service; see its log")
            raise  # not reached: abort raises
        finally:
            self.service.metrics.observe_call(method, code.name, time.perf_counter() - started)

    async def IssueJob(self, request: pb.IssueJobRequest, context: grpc.aio.ServicerContext) -> pb.IssueJobResponse:
        return await self.answer("IssueJob", context, self._issue(request))

    async def _issue(self, request: pb.IssueJobRequest) -> pb.IssueJobResponse:
        (job_id,) = await self.issuer(IssueRequest([request.spec], batched=False))
        return pb.IssueJobResponse(job_id=job_id)

    async def IssueJobs(self, request: pb.IssueJobsRequest, context: grpc.aio.ServicerContext) -> pb.IssueJobsResponse:
        return await self.answer("IssueJobs", context, self._issue_many(request))

    async def _issue_many(self, request: pb.IssueJobsRequest) -> pb.IssueJobsResponse:
        if not request.specs:
            return pb.IssueJobsResponse()
        if len(request.specs) > self.max_issue_batch:
            raise LimitExceeded(
                "--max-issue-batch",
                self.max_issue_batch,
                f"specs: {len(request.specs)} jobs in one IssueJobs call, more than its limit "
                f"(--max-issue-batch {self.max_issue_batch}); send them in smaller batches",
            )
        return pb.IssueJobsResponse(job_ids=await self.issuer(IssueRequest(request.specs, batched=True)))

    @unary
    def KillJobs(self, request: pb.KillJobsRequest) -> pb.KillJobsResponse:
        self.service.kill(request.job_ids)
        return pb.KillJobsResponse()

    @unary
    def ListIssuedJobs(self, request: pb.ListIssuedJobsRequest) -> pb.ListIssuedJobsResponse:
        return pb.ListIssuedJobsResponse(job_ids=self.service.issued_job_ids(request.job_set))

    @unary
    def ListRunningJobs(self, request: pb.ListRunningJobsRequest) -> pb.ListRunningJobsResponse:
        return pb.ListRunningJobsResponse(seconds_running=self.service.running_jobs(request.job_set))

    @unary
    def GetSchedulingStatus(self, request: pb.GetSchedulingStatusRequest) -> pb.GetSchedulingStatusResponse:
        return self.service.scheduling_status(request.job_set)

    @unary
    def SetEnv(self, request: pb.SetEnvRequest) -> pb.SetEnvResponse:
        self.service.set_env(request.name, request.value if request.HasField("value") else None, request.job_set)
        return pb.SetEnvResponse()

    @unary
    def GetCapabilities(self, request: pb.GetCapabilitiesRequest) -> pb.GetCapabilitiesResponse:
        return self.service.capabilities()

    @unary
    def CheckJob(self, request: pb.CheckJobRequest) -> pb.CheckJobResponse:
        return self.service.check(request.spec)

    @unary
    def GetNodeTypes(self, request: pb.GetNodeTypesRequest) -> pb.GetNodeTypesResponse:
        return pb.GetNodeTypesResponse(node_types=self.service.driver.node_types())

    @unary
    def GetNodes(self, request: pb.GetNodesRequest) -> pb.GetNodesResponse:
        nodes = self.service.driver.nodes()
        if request.HasField("preemptible"):
            nodes = [node for node in nodes if node.preemptible == request.preemptible]
        return pb.GetNodesResponse(nodes=nodes)

    @unary
    def IgnoreNode(self, request: pb.IgnoreNodeRequest) -> pb.IgnoreNodeResponse:
        self.service.driver.ignore_node(self._node_name(request), not request.unignore, self._node_backend(request))
        return pb.IgnoreNodeResponse()

    @unary
    def GetNodeInUse(self, request: pb.GetNodeInUseRequest) -> pb.GetNodeInUseResponse:
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

    async def GetUpdatedJob(self, request: pb.GetUpdatedJobRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """Yields GetUpdatedJobResponses already encoded (see add_to_server)."""
        if request.after_sequence < 0:
            await abort_async(context, InvalidArgument("after_sequence", f"must be >= 0, not {request.after_sequence}"))
        peer = context.peer()
        try:
            self.subscribers.admit(peer)
        except LimitExceeded as refusal:
            metrics.STREAMS_REFUSED.labels(self.service.name, refusal.limit).inc()
            await abort_async(context, refusal)
        gauge = metrics.STREAM_SUBSCRIBERS.labels(self.service.name)
        gauge.inc()
        try:
            await context.send_initial_metadata(())  # the client can tell the stream is admitted
            async for message in self.subscribers.follow(
                request.after_sequence, request.job_set, keepalive=self.keepalive_seconds, store_readers=self.store_readers
            ):
                yield message
        finally:
            gauge.dec()
            self.subscribers.release(peer)

    async def GetJobOutput(self, request: pb.GetJobOutputRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """Yields GetJobOutputResponses already encoded, as every stream here does (see add_to_server)."""
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            async with contextlib.aclosing(await output.job_output(self.service, request, self.calls)) as chunks:
                async for data in chunks:
                    yield pb.GetJobOutputResponse(data=data).SerializeToString()
        except BatchgateError as error:
            code = error.code
            await abort_async(context, error)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("GetJobOutput failed")
            await context.abort(grpc.StatusCode.INTERNAL, "GetJobOutput failed inside the service; see its log")
        finally:
            self.service.metrics.observe_call("GetJobOutput", code.name, time.perf_counter() - started)


def add_to_server(servicer: BatchSystemServicer, server: grpc.aio.Server, gate: Gate) -> None:
    """Register every BatchSystem method, as the generated add_BatchSystemServicer_to_server
    would, except that each takes its request as bytes, which `gate` decodes and checks
    (batchgate/admission.py), and streams yield their messages encoded (GetUpdatedJob's as the
    update log encoded them)."""
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in SERVICE.methods:
        request_class: Any = message_factory.GetMessageClass(method.input_type)
        behaviour = getattr(servicer, method.name)
        if method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                gate.stream(method, request_class, behaviour), response_serializer=_already_encoded
            )
        else:
            response_class: Any = message_factory.GetMessageClass(method.output_type)
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                gate.unary(method, request_class, behaviour), response_serializer=response_class.SerializeToString
            )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
    server.add_registered_method_handlers(SERVICE.full_name, handlers)


def _already_encoded(message: bytes) -> bytes:
    return message
