"""What a Job and its pod say became of a batchgate job: Kubernetes' words as an Ending.

Pure functions over the API's JSON, so the rules read as a table and are tested as one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from batchgate.driver import Ending, Verdict

Object = dict[str, Any]

# A container that waits for one of these is not coming up by itself soon; past the service's
# --k8s-start-timeout the job ends NOT_STARTED with the kubelet's words (Toil waits forever).
START_PROBLEMS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)


def epoch(timestamp: str | None) -> float | None:
    """Seconds since the epoch for the API's RFC 3339 time ("2024-05-01T12:00:00Z")."""
    if not timestamp:
        return None
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def true_conditions(obj: Object) -> dict[str, Object]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}


def container_state(pod: Object | None) -> Object:
    """The job container's state ({"waiting": ...}, {"running": ...} or {"terminated": ...})."""
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    return (statuses[0].get("state") or {}) if statuses else {}


def started_at(pod: Object | None) -> float | None:
    """When the job's container started, once it has."""
    state = container_state(pod)
    for phase in ("running", "terminated"):
        if phase in state:
            return epoch(state[phase].get("startedAt"))
    return None


def span(start: str | None, end: str | None) -> float | None:
    """Seconds between two API times. They are whole seconds: a job that started and ended
    within one second is reported as half a second, the middle of what it can have been."""
    begun, ended = epoch(start), epoch(end)
    if begun is None or ended is None:
        return None
    return max(ended - begun, 0.5)


def disrupted(pod: Object | None) -> str | None:
    """Why the pod was taken away (evicted, preempted, its node lost), or None."""
    if pod is None:
        return None
    status = pod.get("status") or {}
    if status.get("reason") in ("Evicted", "Preempting", "NodeLost", "Terminated", "Shutdown", "NodeShutdown", "OutOfcpu", "OutOfmemory"):
        return f"{status['reason']}: {status.get('message', '').strip()}".rstrip(": ")
    target = true_conditions(pod).get("DisruptionTarget")
    if target is not None:
        return f"{target.get('reason', 'DisruptionTarget')}: {target.get('message', '').strip()}".rstrip(": ")
    return None


def ending(job: Object, pod: Object | None) -> Ending | None:
    """How the job ended, or None while it has not (or the pod's last word is still coming)."""
    name = job["metadata"]["name"]
    conditions = true_conditions(job)
    terminated = container_state(pod).get("terminated")
    wall_time = span(terminated.get("startedAt"), terminated.get("finishedAt")) if terminated else None
    if "Complete" in conditions:
        status = job.get("status") or {}
        return Ending(Verdict.EXITED, exit_code=0, wall_time=wall_time or span(status.get("startTime"), status.get("completionTime")), backing_id=name)
    failed = conditions.get("Failed") or {}
    reason, said = failed.get("reason", ""), failed.get("message", "")
    if reason == "DeadlineExceeded":
        deadline = job["spec"].get("activeDeadlineSeconds")
        ran = span((job.get("status") or {}).get("startTime"), failed.get("lastTransitionTime"))
        return Ending(Verdict.OUT_OF_TIME, wall_time=ran, message=f"Job {name} ran past its wall time ({deadline} s, activeDeadlineSeconds): {said}", backing_id=name)
    taken = disrupted(pod)
    if taken is not None:
        return Ending(Verdict.UNKNOWABLE, message=f"the pod of Job {name} was taken away: {taken}", backing_id=name)
    if not failed:
        return None
    if terminated is None:
        return None  # the pod's exit code is on its way (Jobs and pods come by separate watches)
    code = terminated.get("exitCode")
    if terminated.get("reason") == "OOMKilled":
        return Ending(Verdict.OUT_OF_MEMORY, exit_code=code, wall_time=wall_time, message=f"Job {name}: container OOMKilled (memory limit)", backing_id=name)
    detail = terminated.get("message") or terminated.get("reason") or reason
    return Ending(Verdict.FAILED, exit_code=code, wall_time=wall_time, message=f"Job {name} failed: {detail}", backing_id=name)


def failed_without_pod(job: Object) -> Ending:
    """A failed Job whose pod is gone before its exit code was seen."""
    failed = true_conditions(job).get("Failed") or {}
    name = job["metadata"]["name"]
    return Ending(Verdict.FAILED, message=f"Job {name} failed ({failed.get('reason', '')}: {failed.get('message', '')}); its pod is gone", backing_id=name)


def start_problem(pod: Object | None) -> str | None:
    """The kubelet's reason and message when the container cannot start, or None."""
    waiting = container_state(pod).get("waiting") or {}
    if waiting.get("reason") in START_PROBLEMS:
        return f"{waiting['reason']}: {waiting.get('message', '')}".rstrip(": ")
    return None


def unschedulable(pod: Object | None) -> str | None:
    """The scheduler's message for a pod it cannot place, or None."""
    for found in ((pod or {}).get("status") or {}).get("conditions") or []:
        if found.get("type") == "PodScheduled" and found.get("status") == "False" and found.get("reason") == "Unschedulable":
            return str(found.get("message", "Unschedulable"))
    return None
