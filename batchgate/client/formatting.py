"""How the `batchgate` command shows answers to a person (--json shows them to a program)."""

from __future__ import annotations

from batchgate.errors import format_amount
from batchgate.v1 import batchgate_pb2 as pb


def reason_name(reason: int) -> str:
    try:
        return pb.ExitReason.Name(reason).removeprefix("EXIT_REASON_")
    except ValueError:  # a reason newer than these stubs
        return str(reason)


def describe_job_ids(answer: pb.IssueJobsResponse | pb.ListIssuedJobsResponse) -> list[str]:
    return [str(job_id) for job_id in answer.job_ids]


def describe_running(answer: pb.ListRunningJobsResponse) -> list[str]:
    """One line a job: its id and the seconds it has been running."""
    return [f"{job_id}\t{seconds:.1f}" for job_id, seconds in sorted(answer.seconds_running.items())]


def describe_status(status: pb.GetSchedulingStatusResponse) -> list[str]:
    counts = f"queued {status.queued_jobs}, running {status.running_jobs}"
    if status.deadlocked:
        counts += ", deadlocked: the queued jobs can never start"
    return [status.message, counts] if status.message else [counts]


def describe_update(update: pb.UpdatedJob) -> list[str]:
    """One tab-separated line: sequence, job id, reason, exit status, wall time, message."""
    wall_time = f"{update.wall_time_seconds:.2f}" if update.HasField("wall_time_seconds") else "-"
    message = " ".join(update.message.split())  # one update, one line
    fields = (update.sequence, update.job_id, reason_name(update.exit_reason), update.exit_status, wall_time, message)
    return ["\t".join(str(field) for field in fields)]


class UpdateTally:
    """Counts of jobs that succeeded (finished with status 0) and that failed in any way."""

    def __init__(self) -> None:
        self.succeeded = 0
        self.failed = 0

    def add(self, update: pb.UpdatedJob) -> None:
        if update.exit_reason == pb.EXIT_REASON_FINISHED and update.exit_status == 0:
            self.succeeded += 1
        else:
            self.failed += 1

    def __str__(self) -> str:
        return f"updates: {self.succeeded} succeeded, {self.failed} failed"


def describe_capabilities(capabilities: pb.GetCapabilitiesResponse) -> list[str]:
    """A gateway's own lines come first, then each backend's, indented."""
    def limit(resource: str, amount: float) -> str:
        return format_amount(resource, amount) if amount else "no limit"

    accelerators = ", ".join(_describe_accelerator(offer.accelerator) for offer in capabilities.accelerators)
    lines = [
        f"backend: {capabilities.backend} (kind {capabilities.kind or '?'}, version {capabilities.version or '?'})",
        f"max cores: {limit('cores', capabilities.max_cores)}",
        f"max memory: {limit('memory', capabilities.max_memory)}",
        f"max disk: {limit('disk', capabilities.max_disk)}",
        f"max wall time: {limit('wall_time', capabilities.max_wall_time_seconds)}",
        f"accelerators: {accelerators or 'none'}",
        f"preemptible: {'yes' if capabilities.supports_preemptible else 'no'}",
        f"features: {', '.join(capabilities.features) or 'none'}",
    ]
    for backend in capabilities.backends:
        lines += ["  " + line for line in describe_capabilities(backend)]
    return lines


def _describe_accelerator(accelerator: pb.Accelerator) -> str:
    words = [str(accelerator.count), accelerator.kind, accelerator.brand, accelerator.model, accelerator.api]
    return " ".join(word for word in words if word)


def describe_check(verdict: pb.CheckJobResponse) -> list[str]:
    """The verdict, then why each backend refused (or, with no refusals listed, the message)."""
    lines = [f"accepted: would run on {verdict.backend}" if verdict.accepted else "refused"]
    for shortfall in verdict.refusals:
        why = shortfall.message or (
            f"asks {format_amount(shortfall.resource, shortfall.requested)} of {shortfall.resource}, "
            f"has {format_amount(shortfall.resource, shortfall.available)}"
        )
        lines.append(f"  {shortfall.backend}: {why}")
    if verdict.message and not verdict.refusals:
        lines.append(verdict.message)
    return lines
