"""The status page's JSON: what a service knows, shaped for the page (and for scripts that read
/api/*). These block (the store, the driver): callers on the event loop run them in a thread."""

from __future__ import annotations

from google.protobuf import json_format

from batchgate.auth import Tenant
from batchgate.output import output_tail
from batchgate.service import BatchService
from batchgate.store import JobState
from batchgate.v1 import batchgate_pb2 as pb

# How far back the job page looks, in its job set's updates, for a job's update: enough for any
# job of the last day or so of a busy service; an older job's page shows it ended, without how.
MAX_UPDATES_SEARCHED = 200_000
SEARCH_PAGE = 2000
OUTPUT_TAIL_BYTES = 4096  # of each stream, on a job's page
MAX_COUNT_ROWS = 500  # (backend, job set) rows of live jobs; the totals count them all


def update_json(update: pb.UpdatedJob) -> dict[str, object]:
    return {
        "sequence": update.sequence,
        "job_id": update.job_id,
        "job_set": update.job_set,
        "backend": update.backend,
        "exit_reason": pb.ExitReason.Name(update.exit_reason).removeprefix("EXIT_REASON_"),
        "exit_status": update.exit_status,
        "wall_time_seconds": update.wall_time_seconds if update.HasField("wall_time_seconds") else None,
        "backing_id": update.backing_id,
        "message": update.message,
    }


def capabilities_json(capabilities: pb.GetCapabilitiesResponse) -> dict[str, object]:
    found = json_format.MessageToDict(capabilities, preserving_proto_field_name=True)
    found.pop("backends", None)
    return found


def overview_json(service: BatchService) -> dict[str, object]:
    """The service, its backends with health and capabilities, live jobs counted by backend,
    job set and state."""
    capabilities = service.capabilities()
    health = service.driver.health()
    if service.driver.routes:  # a gateway: its backends
        known = {backend.backend: backend for backend in capabilities.backends}
        backends = [
            {"name": name, "healthy": healthy, "capabilities": capabilities_json(known[name]) if name in known else None}
            for name, healthy in sorted(health.items())
        ]
    else:  # a backend: itself, healthy while its store answers
        backends = [{"name": service.name, "healthy": service.store.ping(), "capabilities": capabilities_json(capabilities)}]
    counts: dict[tuple[str, str], dict[str, int]] = {}
    totals = {"queued": 0, "running": 0}
    for (backend, job_set, state), count in service.live_counts().items():
        row = counts.setdefault((backend, job_set), {"queued": 0, "running": 0})
        column = "running" if state is JobState.RUNNING else "queued"  # submitted: waits in the scheduler
        row[column] += count
        totals[column] += count
    return {
        "service": service.name,
        "kind": service.driver.kind,
        "gateway": service.driver.routes,
        "backends": backends,
        "jobs": [{"backend": backend, "job_set": job_set, **row} for (backend, job_set), row in sorted(counts.items())[:MAX_COUNT_ROWS]],
        "rows_not_shown": max(0, len(counts) - MAX_COUNT_ROWS),
        "totals": totals,
        # Kills made but not yet confirmed by the scheduler (made again until they are).
        "unconfirmed_kills": service.store.count_killing(),
        "last_sequence": service.updates.last_sequence,
    }


def overview_for(overview: dict[str, object], tenant: Tenant) -> dict[str, object]:
    """The overview as `tenant` may see it: the live jobs of its own job sets, and their totals."""
    if tenant.see_all:
        return overview
    rows = [row for row in overview["jobs"] if tenant.may_see(row["job_set"])]  # type: ignore[attr-defined, index]
    totals = {column: sum(row[column] for row in rows) for column in ("queued", "running")}
    return {**overview, "jobs": rows, "rows_not_shown": 0, "totals": totals, "unconfirmed_kills": None}


def job_json(service: BatchService, job_id: int, tenant: Tenant) -> dict[str, object] | None:
    """One job: its resolved spec, its timeline, its scheduler id and, once ended, its update;
    None if there is no such job, or `tenant` may not see its job set."""
    record = service.store.job(job_id)
    if record is None or not tenant.may_see(record.job_set):
        return None
    spec = pb.JobSpec.FromString(record.spec)
    update = _update_of(service, job_id, record.job_set) if record.state is JobState.ENDED else None
    timeline = [{"event": "issued", "at": record.issued_at}]
    if record.started_at is not None:
        timeline.append({"event": "started", "at": record.started_at})
    elif record.ended_at is not None and update is not None and update.HasField("wall_time_seconds"):
        # Ended before the service saw it start (a gateway learns of a short job's start from
        # its backend only if it asks while the job runs): when it must have started.
        timeline.append({"event": "started", "at": record.ended_at - update.wall_time_seconds, "estimated": True})
    if record.ended_at is not None:
        ended = {JobState.KILLED: "killed", JobState.KILLING: "killing"}.get(record.state, "ended")
        timeline.append({"event": ended, "at": record.ended_at})
    return {
        "job_id": record.job_id,
        "service": service.name,
        "job_set": record.job_set,
        "backend": spec.backend or service.name,
        "state": record.state.value,
        # The scheduler's own id: what its update names, else what the service was told at submit
        # (a gateway's is "BACKEND:BACKEND_JOB_ID").
        "scheduler_id": (update.backing_id if update is not None and update.backing_id else record.backing_id),
        "spec": json_format.MessageToDict(spec, preserving_proto_field_name=True),
        "timeline": timeline,
        "update": update_json(update) if update is not None else None,
        # What GetJobOutput answers, the end of each stream (or why there is none).
        "output": {
            name: output_tail(service, job_id, stream, OUTPUT_TAIL_BYTES)
            for name, stream in (("stdout", pb.OUTPUT_STREAM_STDOUT), ("stderr", pb.OUTPUT_STREAM_STDERR))
        },
    }


def _update_of(service: BatchService, job_id: int, job_set: str) -> pb.UpdatedJob | None:
    """The job's update: its job set's updates, read back from the newest (updates carry no
    job-id column; a job being looked at has usually just ended)."""
    before = service.updates.last_sequence + 1
    for _ in range(MAX_UPDATES_SEARCHED // SEARCH_PAGE):
        rows = service.store.updates_before(before, job_set, SEARCH_PAGE)
        for _sequence, body in rows:
            update = pb.UpdatedJob.FromString(body)
            if update.job_id == job_id:
                return update
        if len(rows) < SEARCH_PAGE:
            return None
        before = rows[-1][0]
    return None
