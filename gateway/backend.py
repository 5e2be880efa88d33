"""One backend service as the gateway sees it: a channel, its capabilities as last heard, and
whether it is reachable now (what routing, health and fan-out go by)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from batchgate.driver import AcceleratorRequest, Limits
from batchgate.errors import BackendUnavailable, BatchgateError, from_rpc_error
from batchgate.v1 import batchgate_pb2 as pb
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc

# gRPC's own reconnect backoff grows to 120 s; a backend that comes back should be found in seconds.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
# Codes that say the backend could not be reached, rather than that it refused the request.
UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

Response = TypeVar("Response", bound=Message)
Connect = Callable[[str], grpc.Channel]


class Backend:
    def __init__(self, name: str, address: str, *, timeout: float, connect: Connect | None = None) -> None:
        self.name = name
        self.address = address
        self.timeout = timeout
        # `connect` makes the channel (TLS, a token); plaintext by default.
        self.channel = connect(address) if connect else grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.stub = pb_grpc.BatchSystemStub(self.channel)
        self.capabilities: pb.GetCapabilitiesResponse | None = None  # None until first reached
        self.limits: Limits | None = None  # the same, as routing reads them
        self.available = False  # set by the backend's upstream follower only

    def call(self, method: Callable[..., Response], request: Message, *, timeout: float | None = None) -> Response:
        """One unary call; raises BackendUnavailable when the backend cannot be reached, and the
        backend's own error (InsufficientSystemResources, InvalidArgument...) when it refuses."""
        try:
            response: Response = method(request, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise self.error(error) from None
        return response

    def error(self, error: grpc.RpcError) -> BatchgateError:
        if error.code() in UNREACHABLE:
            return BackendUnavailable(self.name, f"backend {self.name!r} ({self.address}) is unavailable: {error.details()}")
        return from_rpc_error(error)

    def fetch_capabilities(self, timeout: float) -> None:
        """Learn what the backend can run (waiting up to `timeout` for it to answer)."""
        try:
            capabilities = self.stub.GetCapabilities(pb.GetCapabilitiesRequest(), timeout=timeout, wait_for_ready=True)
        except grpc.RpcError as error:
            raise self.error(error) from None
        capabilities.backend = self.name  # the name clients route by, whatever the backend calls itself
        self.limits = limits_of(capabilities)
        self.capabilities = capabilities

    def close(self) -> None:
        self.channel.close()


def limits_of(capabilities: pb.GetCapabilitiesResponse) -> Limits:
    """The inverse of jobspec.limits_to_proto (0 there means no known limit)."""
    return Limits(
        max_cores=capabilities.max_cores or None,
        max_memory=capabilities.max_memory or None,
        max_disk=capabilities.max_disk or None,
        max_wall_time=capabilities.max_wall_time_seconds or None,
        accelerators=tuple(
            AcceleratorRequest(count=offered.count, kind=offered.kind, model=offered.model, brand=offered.brand, api=offered.api)
            for offered in (capacity.accelerator for capacity in capabilities.accelerators)
        ),
        supports_preemptible=capabilities.supports_preemptible,
    )
