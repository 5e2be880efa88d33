"""The one error mapping between Python exceptions and gRPC statuses, both directions.

A server raises one of these; `abort` turns it into a gRPC status carrying standard
`google.rpc` details (BadRequest for a bad field, ErrorInfo for everything else), so a client in
any language can read the fields. The Python client turns such a status back into the same
exception with `from_rpc_error`, the way Toil's code expects to catch it.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import ClassVar, NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "batchgate"


class BatchgateError(Exception):
    """Base of every error batchgate reports over gRPC."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    reason: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def metadata(self) -> Mapping[str, str]:
        """Structured fields carried in the status's ErrorInfo."""
        return {}

    def details(self) -> list[any_pb2.Any]:
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=dict(self.metadata()))
        packed = any_pb2.Any()
        packed.Pack(info)
        return [packed]

    def to_status(self) -> grpc.Status:
        code_value = self.code.value[0]
        return rpc_status.to_status(status_pb2.Status(code=code_value, message=self.message, details=self.details()))


class InvalidArgument(BatchgateError):
    """A request field is malformed; `field` names it as a path, e.g. `specs[2].cores`."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description

    def details(self) -> list[any_pb2.Any]:
        violation = error_details_pb2.BadRequest.FieldViolation(field=self.field, description=self.description)
        packed = any_pb2.Any()
        packed.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
        return [packed]

    def within(self, prefix: str) -> InvalidArgument:
        """The same error with its field path moved under `prefix` (e.g. `specs[3]`)."""
        return InvalidArgument(f"{prefix}.{self.field}" if prefix else self.field, self.description)


class InsufficientSystemResources(BatchgateError):
    """A job asks for more of a resource than the backend can ever give one job.

    The fields follow Toil's exception of the same name: `resource` ("cores", "memory", "disk",
    "accelerators", "wall_time"), `requested`, `available` and `batch_system` (the backend).
    """

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "INSUFFICIENT_RESOURCES"

    def __init__(self, resource: str, requested: float, available: float, batch_system: str, details: str = "") -> None:
        text = details or (
            f"the job asks for {resource} {format_amount(resource, requested)}, "
            f"but backend {batch_system!r} can give one job at most {format_amount(resource, available)}"
        )
        super().__init__(text)
        self.resource = resource
        self.requested = requested
        self.available = available
        self.batch_system = batch_system

    def metadata(self) -> Mapping[str, str]:
        return {
            "resource": self.resource,
            "requested": repr(float(self.requested)),
            "available": repr(float(self.available)),
            "backend": self.batch_system,
        }


class StoreUnavailable(BatchgateError):
    """The service's job store cannot be written now (a full disk, an unwritable file).

    Nothing was recorded: the call may be made again once the operator has made room.
    """

    code = grpc.StatusCode.UNAVAILABLE
    reason = "STORE_UNAVAILABLE"

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path

    @classmethod
    def because(cls, path: str, problem: object) -> StoreUnavailable:
        return cls(path, f"the job store {path} cannot be written ({problem}); nothing was recorded, try again later")

    def metadata(self) -> Mapping[str, str]:
        return {"path": self.path}


class AcquisitionTimeoutException(BatchgateError):
    """A resource the service needed (its job store's write lock) could not be acquired in time.

    Retrying later is safe: nothing was recorded.
    """

    code = grpc.StatusCode.UNAVAILABLE
    reason = "ACQUISITION_TIMEOUT"

    def __init__(self, resource: str, waited_seconds: float) -> None:
        super().__init__(f"could not acquire {resource} within {waited_seconds:g} s; try again")
        self.resource = resource
        self.waited_seconds = waited_seconds

    def metadata(self) -> Mapping[str, str]:
        return {"resource": self.resource, "waited_seconds": repr(float(self.waited_seconds))}


class DeadlockException(BatchgateError):
    """Jobs are queued, none runs, and none of them can ever start as the backend stands."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "DEADLOCK"

    def __init__(self, message: str, backend: str = "") -> None:
        super().__init__(message)
        self.backend = backend

    def metadata(self) -> Mapping[str, str]:
        return {"backend": self.backend}


class BackendUnavailable(BatchgateError):
    """The backend a call was routed to cannot be reached now."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "BACKEND_UNAVAILABLE"

    def __init__(self, backend: str, message: str = "") -> None:
        super().__init__(message or f"backend {backend!r} is unavailable")
        self.backend = backend

    def metadata(self) -> Mapping[str, str]:
        return {"backend": self.backend}


class SchedulerError(BatchgateError):
    """The scheduler itself failed in a way that retrying did not mend."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "SCHEDULER_ERROR"

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(message)
        self.backend = backend

    def metadata(self) -> Mapping[str, str]:
        return {"backend": self.backend}


class LimitExceeded(BatchgateError):
    """A request goes past one of the service's limits (open streams, jobs in one call...);
    `limit` names the flag that sets it, so whoever runs the service can raise it."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "LIMIT_EXCEEDED"

    def __init__(self, limit: str, value: int, message: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value

    def metadata(self) -> Mapping[str, str]:
        return {"limit": self.limit, "value": str(self.value)}
class UnknownNode(BatchgateError):
    """A node the backend does not have."""

    code = grpc.StatusCode.NOT_FOUND
    reason = "UNKNOWN_NODE"

    def __init__(self, backend: str, node: str) -> None:
        super().__init__(f"backend {backend!r} has no node named {node!r}")
        self.backend = backend
        self.node = node

    def metadata(self) -> Mapping[str, str]:
        return {"backend": self.backend, "node": self.node}


class Unsupported(BatchgateError):
    """An operation this backend cannot do (e.g. steering jobs away from a node)."""

    code = grpc.StatusCode.UNIMPLEMENTED
    reason = "UNSUPPORTED"

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(message)
        self.backend = backend

    def metadata(self) -> Mapping[str, str]:
        return {"backend": self.backend}


class JobNotFound(BatchgateError):
    """A job id this service never issued."""

    code = grpc.StatusCode.NOT_FOUND
    reason = "JOB_NOT_FOUND"

    def __init__(self, job_id: int, message: str = "") -> None:
        super().__init__(message or f"job {job_id} is not known to this service")
        self.job_id = job_id

    def metadata(self) -> Mapping[str, str]:
        return {"job_id": str(self.job_id)}


class NoOutput(BatchgateError):
    """The service does not have the job output asked for; the message says why."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "NO_OUTPUT"

    def __init__(self, job_id: int, why: str, *, message: str = "") -> None:
        super().__init__(message or f"job {job_id}: {why}")
        self.job_id = job_id

    def metadata(self) -> Mapping[str, str]:
        return {"job_id": str(self.job_id)}


class Unauthenticated(BatchgateError):
    """The call carries no valid bearer token (or none at all) where the service wants one."""

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(BatchgateError):
    """The caller's token does not grant what the call asks (another tenant's job set or jobs).
    The message names the request field and never what the other tenant has."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field

    def metadata(self) -> Mapping[str, str]:
        return {"field": self.field}


class RateLimited(LimitExceeded):
    """A tenant sends more calls a second than the service allows it; the status carries a
    google.rpc.RetryInfo saying when to try again."""

    reason = "RATE_LIMITED"

    def __init__(self, limit: str, value: int, message: str, retry_after: float) -> None:
        super().__init__(limit, value, message)
        self.retry_after = retry_after

    def details(self) -> list[any_pb2.Any]:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromTimedelta(datetime.timedelta(seconds=self.retry_after))
        packed = any_pb2.Any()
        packed.Pack(retry)
        return [*super().details(), packed]


class ServiceError(BatchgateError):
    """Any other status, kept with its code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.status_code = code

    def to_status(self) -> grpc.Status:
        return rpc_status.to_status(status_pb2.Status(code=self.status_code.value[0], message=self.message))


def format_amount(resource: str, amount: float) -> str:
    if resource in ("memory", "disk"):
        return format_bytes(amount)
    if resource == "wall_time":
        return f"{amount:g} s"
    return f"{amount:g}"


def format_bytes(amount: float) -> str:
    value = float(amount)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def abort(context: grpc.ServicerContext, error: BatchgateError) -> NoReturn:
    """End an RPC with the status that `error` maps to (raises, as grpc's abort does)."""
    context.abort_with_status(error.to_status())
    raise AssertionError("abort_with_status returned")


async def abort_async(context: grpc.aio.ServicerContext, error: BatchgateError) -> NoReturn:
    """`abort` for an asyncio server's call."""
    status = error.to_status()
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("abort returned")


def from_rpc_error(error: grpc.RpcError) -> BatchgateError:
    """The batchgate exception a failed call stands for (ServiceError when it is none of ours)."""
    code: grpc.StatusCode = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message: str = error.details() if hasattr(error, "details") else str(error)
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except (ValueError, AttributeError):
        status = None
    details = list(status.details) if status is not None else []
    for packed in details:
        if packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            packed.Unpack(request)
            if request.field_violations:
                violation = request.field_violations[0]
                return InvalidArgument(violation.field, violation.description)
        if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            packed.Unpack(info)
            if info.domain == DOMAIN:
                known = _from_error_info(info, message)
                if isinstance(known, RateLimited):
                    known.retry_after = _retry_delay(details)
                if known is not None:
                    return known
    return ServiceError(code, message or code.name)


def _retry_delay(details: list[any_pb2.Any]) -> float:
    """Seconds a google.rpc.RetryInfo among `details` says to wait (0 without one)."""
    for packed in details:
        retry = error_details_pb2.RetryInfo()
        if packed.Unpack(retry):
            return retry.retry_delay.ToTimedelta().total_seconds()
    return 0.0


def _from_error_info(info: error_details_pb2.ErrorInfo, message: str) -> BatchgateError | None:
    fields = info.metadata
    if info.reason == InsufficientSystemResources.reason:
        return InsufficientSystemResources(
            fields.get("resource", ""),
            float(fields.get("requested", "0")),
            float(fields.get("available", "0")),
            fields.get("backend", ""),
            details=message,
        )
    if info.reason == AcquisitionTimeoutException.reason:
        return AcquisitionTimeoutException(fields.get("resource", ""), float(fields.get("waited_seconds", "0")))
    if info.reason == DeadlockException.reason:
        return DeadlockException(message, fields.get("backend", ""))
    if info.reason == StoreUnavailable.reason:
        return StoreUnavailable(fields.get("path", ""), message)
    if info.reason == BackendUnavailable.reason:
        return BackendUnavailable(fields.get("backend", ""), message)
    if info.reason == SchedulerError.reason:
        return SchedulerError(fields.get("backend", ""), message)
    if info.reason == Unauthenticated.reason:
        return Unauthenticated(message)
    if info.reason == PermissionDenied.reason:
        field = fields.get("field", "")
        return PermissionDenied(field, message.removeprefix(f"{field}: "))
    if info.reason == RateLimited.reason:
        return RateLimited(fields.get("limit", ""), int(fields.get("value", "0") or 0), message, 0.0)
    if info.reason == LimitExceeded.reason:
        return LimitExceeded(fields.get("limit", ""), int(fields.get("value", "0") or 0), message)
    if info.reason == UnknownNode.reason:
        return UnknownNode(fields.get("backend", ""), fields.get("node", ""))
    if info.reason == Unsupported.reason:
        return Unsupported(fields.get("backend", ""), message)
    if info.reason == JobNotFound.reason:
        return JobNotFound(int(fields.get("job_id", "0") or 0), message)
    if info.reason == NoOutput.reason:
        return NoOutput(int(fields.get("job_id", "0") or 0), "", message=message)
    return None

