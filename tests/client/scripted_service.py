"""A real gRPC BatchSystem server whose answers a test scripts, for testing the client over the wire.

Unary methods answer with what the test put in `answers` (a message, or a BatchgateError to fail
with) and record each request. GetUpdatedJob serves an `UpdateLog` the test appends to, and can be
told to misbehave (break after every response, ignore the cursor) the way a restarting or buggy
service would.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
from google.protobuf.message import Message

from batchgate.errors import BatchgateError, abort
from batchgate.v1 import batchgate_pb2 as pb
from batchgate.v1 import batchgate_pb2_grpc as rpc


class UpdateLog:
    def __init__(self) -> None:
        self.updates: list[pb.UpdatedJob] = []
        self.changed = threading.Condition()

    def append(self, job_id: int, reason: int = pb.EXIT_REASON_FINISHED, exit_status: int = 0) -> int:
        with self.changed:
            sequence = len(self.updates) + 1
            self.updates.append(pb.UpdatedJob(sequence=sequence, job_id=job_id, exit_reason=reason, exit_status=exit_status))
            self.changed.notify_all()
            return sequence

    def after(self, sequence: int, wait: float) -> list[pb.UpdatedJob]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.updates) > sequence, timeout=wait)
            return self.updates[sequence:]


class ScriptedServicer:
    def __init__(self, log: UpdateLog | None = None, *, ignore_cursor: bool = False, break_after_response: bool = False) -> None:
        self.answers: dict[str, Message | BatchgateError] = {}
        self.requests: dict[str, list[Message]] = defaultdict(list)
        self.log = log or UpdateLog()
        self.ignore_cursor = ignore_cursor
        self.break_after_response = break_after_response

    def __getattr__(self, method: str) -> Callable[[Message, grpc.ServicerContext], Message]:
        if not method[:1].isupper():
            raise AttributeError(method)

        def answer(request: Message, context: grpc.ServicerContext) -> Message:
            self.requests[method].append(request)
            scripted = self.answers.get(method)
            if scripted is None:
                context.abort(grpc.StatusCode.UNIMPLEMENTED, f"the test scripted no answer for {method}")
            if isinstance(scripted, BatchgateError):
                abort(context, scripted)
            return scripted

        return answer

    def GetUpdatedJob(self, request: pb.GetUpdatedJobRequest, context: grpc.ServicerContext) -> Iterator[pb.GetUpdatedJobResponse]:
        self.requests["GetUpdatedJob"].append(request)
        sent = 0 if self.ignore_cursor else request.after_sequence
        while context.is_active():
            updates = self.log.after(sent, wait=0.1)
            yield pb.GetUpdatedJobResponse(updates=updates)  # empty: a keep-alive
            if updates:
                sent = updates[-1].sequence
                if self.break_after_response:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "the test breaks the stream")


def start_server(servicer: object, port: int = 0, credentials: grpc.ServerCredentials | None = None) -> tuple[grpc.Server, str]:
    """A started server on 127.0.0.1 (on `port`, to stand in for one that restarted) and its address."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    rpc.add_BatchSystemServicer_to_server(servicer, server)
    address = f"127.0.0.1:{port}"
    if credentials is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, credentials)
    server.start()
    return server, f"127.0.0.1:{bound}"
