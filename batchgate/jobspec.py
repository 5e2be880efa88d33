"""From a client's JobSpec to the Job a driver runs: validation, defaults, environment, limits.

Validation happens once, here, for every backend: a malformed spec fails INVALID_ARGUMENT naming
the field, and a job larger than the backend can ever run fails RESOURCE_EXHAUSTED.
The spec that passes is stored "resolved" (defaults filled in, SetEnv merged), so a job means
the same thing after a restart as when it was issued, whatever SetEnv did meanwhile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from batchgate import __version__
from batchgate.driver import AcceleratorRequest, Job, Limits
from batchgate.errors import InsufficientSystemResources, InvalidArgument
from batchgate.v1 import batchgate_pb2 as pb

MAX_TEXT = 4096  # names, keys and paths; commands may be longer
MAX_COMMAND = 1 << 20
BACKEND_OPTION_FIELDS = tuple(field.name for field in pb.JobSpec.DESCRIPTOR.oneofs_by_name["backend_options"].fields)
# JobSpec's typed options by message type: "batchgate.v1.SlurmOptions" -> "slurm".
_OPTION_FIELD_BY_TYPE = {
    field.message_type.full_name: field.name for field in pb.JobSpec.DESCRIPTOR.oneofs_by_name["backend_options"].fields
}


@dataclass(frozen=True)
class Defaults:
    """What a job gets for a resource it does not name (Toil's --defaultCores and friends)."""

    cores: float = 1.0
    memory: int = 2 * 1024**3
    disk: int = 2 * 1024**3


def check_env_name(name: str, field: str) -> None:
    if not name:
        raise InvalidArgument(field, "an environment variable needs a name")
    if "=" in name or "\0" in name:
        raise InvalidArgument(field, f"environment variable name {name!r} may not contain '=' or NUL")


def check_env_value(value: str, field: str) -> None:
    if "\0" in value:
        raise InvalidArgument(field, "environment values may not contain NUL")


def check_text(value: str, field: str, limit: int = MAX_TEXT) -> None:
    if "\0" in value:
        raise InvalidArgument(field, "may not contain NUL")
    if len(value) > limit:
        raise InvalidArgument(field, f"is {len(value)} characters long; the limit is {limit}")


def _check_amount(value: float, field: str) -> None:
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(field, f"must be a finite number >= 0, not {value!r}")


def resolve(
    spec: pb.JobSpec, *, defaults: Defaults, environment: Mapping[str, str], options_field: str | None, any_options: bool = False
) -> pb.JobSpec:
    """Validate `spec` and return a copy with defaults filled in and `environment` (SetEnv's)
    merged under the job's own variables. Raises InvalidArgument naming the field."""
    if not spec.command.strip():
        raise InvalidArgument("command", "must not be empty")
    check_text(spec.command, "command", MAX_COMMAND)
    for field in ("name", "working_directory", "stdout_path", "stderr_path", "job_set", "request_key"):
        check_text(getattr(spec, field), field)
    if spec.HasField("cores"):
        _check_amount(spec.cores, "cores")
    for field in ("memory", "disk"):
        if spec.HasField(field):
            _check_amount(getattr(spec, field), field)
    if spec.HasField("wall_time_seconds") and not (math.isfinite(spec.wall_time_seconds) and spec.wall_time_seconds > 0):
        raise InvalidArgument("wall_time_seconds", f"must be a finite number > 0, not {spec.wall_time_seconds!r}")
    for index, accelerator in enumerate(spec.accelerators):
        if accelerator.count < 1:
            raise InvalidArgument(f"accelerators[{index}].count", f"must be at least 1, not {accelerator.count}")
        if not accelerator.kind:
            raise InvalidArgument(f"accelerators[{index}].kind", "must name a kind, e.g. 'gpu'")
    for name, value in spec.environment.items():
        check_env_name(name, f"environment[{name!r}]")
        check_env_value(value, f"environment[{name!r}]")
    chosen_options = spec.WhichOneof("backend_options")
    if chosen_options is not None and chosen_options != options_field and not any_options:
        takes = f"it takes only {options_field} options" if options_field else "it takes no backend options"
        raise InvalidArgument(chosen_options, f"this backend cannot use {chosen_options} options; {takes}")

    resolved = pb.JobSpec()
    resolved.CopyFrom(spec)
    if not spec.HasField("cores"):
        resolved.cores = defaults.cores
    if not spec.HasField("memory"):
        resolved.memory = defaults.memory
    if not spec.HasField("disk"):
        resolved.disk = defaults.disk
    resolved.environment.clear()
    resolved.environment.update(environment)
    resolved.environment.update(spec.environment)
    return resolved


def to_job(job_id: int, resolved: pb.JobSpec) -> Job:
    """The driver's view of a resolved spec."""
    options_field = resolved.WhichOneof("backend_options")
    return Job(
        job_id=job_id,
        command=resolved.command,
        name=resolved.name,
        cores=resolved.cores,
        memory=resolved.memory,
        disk=resolved.disk,
        accelerators=tuple(
            AcceleratorRequest(count=a.count, kind=a.kind, model=a.model, brand=a.brand, api=a.api)
            for a in resolved.accelerators
        ),
        preemptible=resolved.preemptible,
        wall_time=resolved.wall_time_seconds if resolved.HasField("wall_time_seconds") else None,
        environment=dict(resolved.environment),
        working_directory=resolved.working_directory,
        stdout_path=resolved.stdout_path,
        stderr_path=resolved.stderr_path,
        job_set=resolved.job_set,
        request_key=resolved.request_key,
        backend=resolved.backend,
        options=getattr(resolved, options_field) if options_field else None,
    )


def options_field(job: Job) -> str | None:
    """The JobSpec field the job's typed options came in ("slurm", ...), if it has any."""
    return None if job.options is None else _OPTION_FIELD_BY_TYPE[job.options.DESCRIPTOR.full_name]


def to_spec(job: Job) -> pb.JobSpec:
    """The resolved spec a Job was made from (the inverse of `to_job`, but for the id)."""
    spec = pb.JobSpec(
        command=job.command,
        name=job.name,
        cores=job.cores,
        memory=job.memory,
        disk=job.disk,
        accelerators=[pb.Accelerator(count=a.count, kind=a.kind, model=a.model, brand=a.brand, api=a.api) for a in job.accelerators],
        preemptible=job.preemptible,
        environment=job.environment,
        working_directory=job.working_directory,
        stdout_path=job.stdout_path,
        stderr_path=job.stderr_path,
        job_set=job.job_set,
        request_key=job.request_key,
        backend=job.backend,
    )
    if job.wall_time is not None:
        spec.wall_time_seconds = job.wall_time
    field = options_field(job)
    if field is not None and job.options is not None:
        getattr(spec, field).CopyFrom(job.options)
    return spec


def shortfall(job: Job, limits: Limits, backend: str) -> InsufficientSystemResources | None:
    """The first resource `job` asks more of than `backend` can ever give one job, if any."""
    for resource, requested, available in (
        ("cores", job.cores, limits.max_cores),
        ("memory", job.memory, limits.max_memory),
        ("disk", job.disk, limits.max_disk),
        ("wall_time", job.wall_time, limits.max_wall_time),
    ):
        if requested is not None and available is not None and requested > available:
            return InsufficientSystemResources(resource, requested, available, backend)
    for accelerator in job.accelerators:
        fitting = [offered.count for offered in limits.accelerators if accelerator.satisfied_by(offered)]
        available_count = max(fitting, default=0)
        if accelerator.count > available_count:
            wanted = ":".join(part for part in (accelerator.kind, accelerator.brand, accelerator.model, accelerator.api) if part)
            return InsufficientSystemResources(
                "accelerators",
                accelerator.count,
                available_count,
                backend,
                details=(
                    f"the job asks for {accelerator.count} accelerator(s) of kind {wanted}, "
                    f"but backend {backend!r} has {available_count} such"
                ),
            )
    return None


def limits_to_proto(limits: Limits, backend: str, kind: str) -> pb.GetCapabilitiesResponse:
    return pb.GetCapabilitiesResponse(
        backend=backend,
        kind=kind,
        max_cores=limits.max_cores or 0,
        max_memory=limits.max_memory or 0,
        max_disk=limits.max_disk or 0,
        max_wall_time_seconds=limits.max_wall_time or 0,
        accelerators=[
            pb.AcceleratorCapacity(
                accelerator=pb.Accelerator(count=a.count, kind=a.kind, model=a.model, brand=a.brand, api=a.api)
            )
            for a in limits.accelerators
        ],
        supports_preemptible=limits.supports_preemptible,
        version=__version__,
    )
