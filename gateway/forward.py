"""The spec a backend gets for a gateway job: the job as the gateway resolved it (defaults and
SetEnv's environment already in), under the gateway's private job set and request key."""

from __future__ import annotations

from batchgate.driver import Job
from batchgate.v1 import batchgate_pb2 as pb

from .routing import options_field


def backend_spec(job: Job, *, job_set: str, request_key: str) -> pb.JobSpec:
    spec = pb.JobSpec(
        command=job.command,
        name=job.name,
        cores=job.cores,
        memory=job.memory,
        disk=job.disk,
        accelerators=[
            pb.Accelerator(count=a.count, kind=a.kind, model=a.model, brand=a.brand, api=a.api) for a in job.accelerators
        ],
        preemptible=job.preemptible,
        environment=job.environment,
        working_directory=job.working_directory,
        stdout_path=job.stdout_path,
        stderr_path=job.stderr_path,
        job_set=job_set,
        request_key=request_key,
    )
    if job.wall_time is not None:
        spec.wall_time_seconds = job.wall_time
    field = options_field(job)
    if field is not None and job.options is not None:
        getattr(spec, field).CopyFrom(job.options)
    return spec
