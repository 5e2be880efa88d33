"""The table from what a Job and its pod say to what the kit is told (services/k8s/status.py),
row by row, including the rows the emulated cluster does not produce (preemption, a node lost,
a failed Job whose pod is gone)."""

from __future__ import annotations

from typing import Any

import pytest

from batchgate.driver import Verdict
from batchgate.services.k8s import status

STARTED, FINISHED = "2026-01-01T10:00:00Z", "2026-01-01T10:00:07Z"


def job(*conditions: tuple[str, str], deadline: int | None = None) -> dict[str, Any]:
    found = [{"type": kind, "status": "True", "reason": reason, "message": f"{reason} said", "lastTransitionTime": FINISHED} for kind, reason in conditions]
    return {
        "metadata": {"name": "j-1"},
        "spec": {"activeDeadlineSeconds": deadline} if deadline else {},
        "status": {"conditions": found, "startTime": STARTED, "completionTime": FINISHED},
    }


def pod(state: dict[str, Any] | None = None, **status_fields: Any) -> dict[str, Any]:
    statuses = [{"name": "job", "state": state}] if state is not None else []
    return {"metadata": {"name": "j-1-abcde"}, "status": {"containerStatuses": statuses, **status_fields}}


def terminated(code: int, reason: str = "Error") -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": reason, "startedAt": STARTED, "finishedAt": FINISHED}}


@pytest.mark.parametrize(
    "the_job, the_pod, verdict, code",
    [
        (job(("Complete", "")), pod(terminated(0, "Completed")), Verdict.EXITED, 0),
        (job(("Failed", "BackoffLimitExceeded")), pod(terminated(3)), Verdict.FAILED, 3),
        (job(("Failed", "BackoffLimitExceeded")), pod(terminated(137, "OOMKilled")), Verdict.OUT_OF_MEMORY, 137),
        (job(("Failed", "DeadlineExceeded"), deadline=5), None, Verdict.OUT_OF_TIME, None),
        (job(("Failed", "BackoffLimitExceeded")), pod(terminated(137), reason="Evicted", message="low on memory"), Verdict.UNKNOWABLE, None),
        (job(), pod(terminated(143), conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}]), Verdict.UNKNOWABLE, None),
        (job(), pod(reason="NodeLost", phase="Unknown"), Verdict.UNKNOWABLE, None),
    ],
)
def test_what_a_job_and_its_pod_say_is_the_ending(the_job: dict, the_pod: dict | None, verdict: Verdict, code: int | None) -> None:
    ended = status.ending(the_job, the_pod)
    assert ended is not None and ended.verdict is verdict and ended.exit_code == code and ended.backing_id == "j-1"


def test_wall_time_comes_from_the_container_and_is_never_zero() -> None:
    ended = status.ending(job(("Complete", "")), pod(terminated(0, "Completed")))
    assert ended is not None and ended.wall_time == 7
    instant = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": STARTED, "finishedAt": STARTED}}
    quick = status.ending(job(("Complete", "")), pod(instant))
    assert quick is not None and quick.wall_time == 0.5


def test_a_running_or_waiting_job_has_not_ended_and_a_failure_waits_for_the_exit_code() -> None:
    assert status.ending(job(), pod({"running": {"startedAt": STARTED}})) is None
    assert status.ending(job(("Failed", "BackoffLimitExceeded")), pod({"running": {"startedAt": STARTED}})) is None
    gone = status.failed_without_pod(job(("Failed", "BackoffLimitExceeded")))
    assert gone.verdict is Verdict.FAILED and gone.exit_code is None and "pod is gone" in gone.message


def test_start_problems_and_unschedulable_pods_are_told_in_kubernetes_words() -> None:
    waiting = pod({"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}})
    assert status.start_problem(waiting) == 'ImagePullBackOff: Back-off pulling image "x"'
    assert status.start_problem(pod({"waiting": {"reason": "ContainerCreating"}})) is None
    stuck = pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient cpu."}])
    assert status.unschedulable(stuck) == "0/3 nodes are available: 3 Insufficient cpu."
    assert status.started_at(pod({"running": {"startedAt": STARTED}})) == status.epoch(STARTED)
