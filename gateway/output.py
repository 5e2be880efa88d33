"""A gateway job's output: the backend's GetJobOutput stream, passed on chunk by chunk."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from batchgate.v1 import batchgate_pb2 as pb

from .backend import Backend


class ForwardedOutput:
    """Driver.output's answer for a job on `backend` (as batchgate.driver.OutputChunks): the
    backend's errors (NOT_FOUND, FAILED_PRECONDITION saying why...) come out as its own."""

    def __init__(self, backend: Backend, request: pb.GetJobOutputRequest) -> None:
        self._backend = backend
        # No deadline: a followed job's stream lasts as long as the job runs.
        self._call = backend.stub.GetJobOutput(request)

    def __iter__(self) -> Iterator[bytes]:
        try:
            for response in self._call:
                yield response.data
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                raise self._backend.error(error) from None

    def cancel(self) -> None:
        self._call.cancel()
