"""Between Toil's batch-system types and batchgate's messages, both ways."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from toil.batchSystems.abstractBatchSystem import (
    BatchJobExitReason,
    InsufficientSystemResources,
    UpdatedBatchJobInfo,
)
from toil.job import AcceleratorRequirement, Requirer

from batchgate.client import job_spec
from batchgate.v1 import batchgate_pb2 as pb

log = logging.getLogger(__name__)

EXIT_REASONS: Mapping[int, BatchJobExitReason] = {
    pb.EXIT_REASON_FINISHED: BatchJobExitReason.FINISHED,
    pb.EXIT_REASON_FAILED: BatchJobExitReason.FAILED,
    pb.EXIT_REASON_LOST: BatchJobExitReason.LOST,
    pb.EXIT_REASON_KILLED: BatchJobExitReason.KILLED,
    pb.EXIT_REASON_ERROR: BatchJobExitReason.ERROR,
    pb.EXIT_REASON_MEMLIMIT: BatchJobExitReason.MEMLIMIT,
    pb.EXIT_REASON_MISSING: BatchJobExitReason.MISSING,
    pb.EXIT_REASON_MAXJOBDURATION: BatchJobExitReason.MAXJOBDURATION,
    pb.EXIT_REASON_PARTITION: BatchJobExitReason.PARTITION,
    pb.EXIT_REASON_TIMELIMIT: BatchJobExitReason.TIMELIMIT,  # what Toil's --doubleTime answers
}

# batchgate's resource names that are spelled differently on Toil's Requirer.
TOIL_RESOURCE_NAMES = {"wall_time": "walltime"}
WHOLE_RESOURCES = ("memory", "disk", "accelerators", "walltime")


def spec_for(
    command: str,
    requirer: Requirer,
    *,
    name: str,
    environment: Mapping[str, str],
    backend: str,
    wall_time_round_up: int,
) -> pb.JobSpec:
    """The JobSpec that runs `command` with `requirer`'s requirements."""
    # Requirers made without a Config (as Toil's own batch-system tests make them) may lack the
    # optional requirements; cores, memory, disk and accelerators they must have.
    walltime: int = getattr(requirer, "walltime", 0)  # 0 means no limit
    if walltime and wall_time_round_up:
        walltime = math.ceil(walltime / wall_time_round_up) * wall_time_round_up
    return job_spec(
        command,
        name=name,
        cores=float(requirer.cores),
        memory=requirer.memory,
        disk=requirer.disk,
        accelerators=[accelerator(requested) for requested in requirer.accelerators],
        preemptible=getattr(requirer, "preemptible", False),
        wall_time=walltime or None,
        environment=environment,
        backend=backend,
    )


def accelerator(requested: AcceleratorRequirement) -> pb.Accelerator:
    return pb.Accelerator(
        count=requested["count"],
        kind=requested["kind"],
        model=requested.get("model", ""),
        brand=requested.get("brand", ""),
        api=requested.get("api", ""),
    )


def update_info(update: pb.UpdatedJob) -> UpdatedBatchJobInfo:
    reason = EXIT_REASONS.get(update.exit_reason)
    if update.message and reason is not BatchJobExitReason.FINISHED:
        log.warning("batchgate job %d (%s): %s", update.job_id, update.backend or "backend", update.message)
    return UpdatedBatchJobInfo(
        jobID=update.job_id,
        exitStatus=update.exit_status,
        exitReason=reason,
        wallTime=update.wall_time_seconds if update.HasField("wall_time_seconds") else None,
        backing_id=update.backing_id or None,
    )


def insufficient_resources(
    requirer: Requirer, *, resource: str, available: float, backend: str, message: str
) -> InsufficientSystemResources:
    """Toil's exception for a backend's refusal (Toil reads the amount requested off `requirer`)."""
    toil_resource = TOIL_RESOURCE_NAMES.get(resource, resource)
    return InsufficientSystemResources(
        requirer,
        toil_resource,
        int(available) if toil_resource in WHOLE_RESOURCES else available,
        batch_system=f"batchgate backend {backend!r}",
        details=[message],
    )
