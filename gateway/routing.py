"""Where a job goes: the backend it names, else the first backend whose capabilities fit it, else
the default; and, when none will do, which backend refused what.

Routing reads each backend's capabilities as last fetched (on every reconnect), never asks a
backend per job: IssueJob through the gateway costs no extra round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from batchgate.driver import Job, Limits
from batchgate.errors import BackendUnavailable, InsufficientSystemResources, InvalidArgument
from batchgate.jobspec import options_field, shortfall
from batchgate.v1 import batchgate_pb2 as pb

from .backend import Backend

Amount = TypeVar("Amount", int, float)

class NoBackendFits(InsufficientSystemResources):
    """No backend can ever run the job; `refusals` says why, backend by backend."""

    def __init__(self, refusals: list[pb.Shortfall]) -> None:
        first = refusals[0]
        text = first.message if len(refusals) == 1 else "no backend can run this job: " + "; ".join(r.message for r in refusals)
        super().__init__(first.resource, first.requested, first.available, first.backend, details=text)
        self.refusals = refusals


class NoBackendReachable(BackendUnavailable):
    """The backends that might run the job cannot be reached now; the others refused it."""

    def __init__(self, backend: str, refusals: list[pb.Shortfall]) -> None:
        text = "; ".join(r.message for r in refusals if r.backend != backend)
        super().__init__(backend, f"backend {backend!r} is unavailable" + (f"; {text}" if text else ""))
        self.refusals = refusals


def check_request(job: Job, backends: Sequence[Backend]) -> None:
    """Refuse a job naming a backend the gateway lacks, or options no backend it may go to takes."""
    if job.backend and job.backend not in {backend.name for backend in backends}:
        names = ", ".join(backend.name for backend in backends)
        raise InvalidArgument("backend", f"no backend named {job.backend!r} behind this gateway (it has: {names})")
    field = options_field(job)
    if field is None:
        return
    candidates = [backend for backend in backends if backend.name == job.backend] if job.backend else backends
    # A backend not yet reached might take them; it decides when the job gets there.
    if not any(backend.capabilities is None or _takes_options(backend.capabilities, field) for backend in candidates):
        where = f"backend {job.backend!r} takes" if job.backend else "no backend behind this gateway takes"
        raise InvalidArgument(field, f"{where} no {field} options")


def choose(job: Job, backends: Sequence[Backend], default: str) -> str:
    """The backend for `job` (already passed by check_request). Raises NoBackendFits when every
    backend refuses it, NoBackendReachable when those that might take it are down."""
    candidates = [backend for backend in backends if backend.name == job.backend] if job.backend else backends
    refused: list[pb.Shortfall] = []
    unreachable: list[str] = []
    for backend in candidates:
        refusal = _refusal(job, backend)
        if refusal is not None:
            refused.append(refusal)
        elif backend.available:
            return backend.name
        else:
            unreachable.append(backend.name)
    if not unreachable:
        raise NoBackendFits(refused)
    # No reachable backend is known to fit: the job would go to the default (or the first that
    # might take it), which is down; failing fast lets the client retry or choose.
    target = default if default in unreachable else unreachable[0]
    raise NoBackendReachable(target, refused + [_unavailable(name) for name in unreachable])


def refusals(job: Job, backends: Sequence[Backend]) -> list[pb.Shortfall]:
    """Every backend that would not take `job` now, and why."""
    found: list[pb.Shortfall] = []
    for backend in backends:
        refusal = _refusal(job, backend)
        if refusal is not None:
            found.append(refusal)
        elif not backend.available:
            found.append(_unavailable(backend.name))
    return found


def largest(every: Sequence[Limits]) -> Limits:
    """The most any one of these backends can give one job."""
    return Limits(
        max_cores=_most(limits.max_cores for limits in every),
        max_memory=_most(limits.max_memory for limits in every),
        max_disk=_most(limits.max_disk for limits in every),
        max_wall_time=_most(limits.max_wall_time for limits in every),
        accelerators=tuple(accelerator for limits in every for accelerator in limits.accelerators),
        supports_preemptible=any(limits.supports_preemptible for limits in every),
    )


def _most(values: Iterable[Amount | None]) -> Amount | None:
    """The largest; None (no limit) if there are none, or one of them is None."""
    found = list(values)
    return None if not found or None in found else max(value for value in found if value is not None)


def _refusal(job: Job, backend: Backend) -> pb.Shortfall | None:
    """Why `backend` cannot ever run `job`, from its capabilities; None if it can (or they are unknown)."""
    if backend.capabilities is None or backend.limits is None:
        return None
    field = options_field(job)
    if field is not None and not _takes_options(backend.capabilities, field):
        return pb.Shortfall(
            backend=backend.name, resource="options", message=f"backend {backend.name!r} takes no {field} options"
        )
    too_big = shortfall(job, backend.limits, backend.name)
    if too_big is None:
        return None
    return pb.Shortfall(
        backend=backend.name,
        resource=too_big.resource,
        requested=float(too_big.requested),
        available=float(too_big.available),
        message=too_big.message,
    )


def _unavailable(name: str) -> pb.Shortfall:
    return pb.Shortfall(backend=name, message=f"backend {name!r} is unavailable")


def _takes_options(capabilities: pb.GetCapabilitiesResponse, field: str) -> bool:
    return f"options:{field}" in capabilities.features
