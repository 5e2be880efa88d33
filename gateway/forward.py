"""The spec a backend gets for a gateway job: the job as the gateway resolved it (defaults and
SetEnv's environment already in), under the gateway's private job set and request key."""

from __future__ import annotations

from batchgate.driver import Job
from batchgate.jobspec import to_spec
from batchgate.v1 import batchgate_pb2 as pb


def backend_spec(job: Job, *, job_set: str, request_key: str) -> pb.JobSpec:
    spec = to_spec(job)
    spec.job_set = job_set
    spec.request_key = request_key
    spec.ClearField("backend")  # the backend is where it goes, not somewhere it routes on
    return spec
