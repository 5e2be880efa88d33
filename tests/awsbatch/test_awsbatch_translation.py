"""What AWS Batch is told of a job and what its answers mean (services/awsbatch/jobs.py), on the
shapes AWS Batch documents for SubmitJob and DescribeJobs' JobDetail."""

from __future__ import annotations

import pytest

from batchgate.driver import AcceleratorRequest, Job
from batchgate.endings import ExitReason, outcome_of
from batchgate.services.awsbatch import jobs
from batchgate.services.awsbatch.jobs import Seen


def job(job_id: int = 5, **fields: object) -> Job:
    defaults: dict[str, object] = {"command": "true", "name": "", "cores": 0.1, "memory": 64 * 1024**2, "disk": 0}
    return Job(job_id=job_id, **{**defaults, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("my job/1 (x)", "my-job1-x"),
        ("", "j-5"),
        ("_hidden", "j_hidden"),
        ("a", "a-5"),
        ("é" * 3, "j-5"),
        ("x" * 200, "x" * 128),
    ],
)
def test_job_names_follow_aws_rules(name: str, expected: str) -> None:
    assert jobs.job_name(job(name=name)) == expected


def test_a_wall_time_below_the_endpoints_minimum_is_raised_to_it() -> None:
    assert jobs.timeout_seconds(job(wall_time=1.0), None, 60) == 60
    assert jobs.timeout_seconds(job(wall_time=90.2), None, 60) == 91
    assert jobs.timeout_seconds(job(), 7200.0, 60) == 7200
    assert jobs.timeout_seconds(job(), None, 60) is None


def test_the_request_rounds_resources_up_and_tags_the_job() -> None:
    request = jobs.submit_request(
        job(
            cores=2.5,
            memory=1,
            accelerators=(AcceleratorRequest(count=2, kind="gpu"),),
            environment={"A": "1"},
            request_key="key with ünïcode & more",
        ),
        queue="q",
        definition="d",
        instance_id="inst",
        owner="me",
        timeout=60,
    )
    overrides = request["containerOverrides"]
    assert {r["type"]: r["value"] for r in overrides["resourceRequirements"]} == {"VCPU": "3", "MEMORY": "4", "GPU": "2"}
    assert overrides["environment"] == [{"name": "A", "value": "1"}]
    assert overrides["command"][:2] == ["/bin/sh", "-c"] and overrides["command"][3] == "true"
    assert request["timeout"] == {"attemptDurationSeconds": 60}
    tags = request["tags"]
    assert tags["batchgate:instance"] == "inst" and tags["batchgate:job"] == "5" and tags["Owner"] == "me"
    # "&" is not allowed in a tag value: a digest tells keys apart all the same
    assert tags["batchgate:request-key"].startswith("sha256:")
    assert jobs.tags(job(request_key="plain-key_1"), "i", "")["batchgate:request-key"] == "plain-key_1"


def detail(status: str, **fields: object) -> dict[str, object]:
    return {"jobId": "0f6c2a4e", "status": status, "startedAt": 1_700_000_000_000, "stoppedAt": 1_700_000_004_500, **fields}


@pytest.mark.parametrize(
    "described, reason, status",
    [
        (detail("SUCCEEDED", container={"exitCode": 0}), ExitReason.FINISHED, 0),
        (detail("FAILED", container={"exitCode": 3}, statusReason="Essential container in task exited"), ExitReason.FAILED, 3),
        (detail("FAILED", attempts=[{"container": {"exitCode": 4}}]), ExitReason.FAILED, 4),
        (detail("FAILED"), ExitReason.FAILED, 255),
        (
            detail("FAILED", container={"exitCode": 137, "reason": "OutOfMemoryError: Container killed due to memory usage"}),
            ExitReason.MEMLIMIT,
            137,
        ),
        (detail("FAILED", statusReason="Job attempt duration exceeded timeout", timeout={"attemptDurationSeconds": 60}), ExitReason.TIMELIMIT, 255),
        # moto: no reason, no exit code, after the whole timeout
        (detail("FAILED", timeout={"attemptDurationSeconds": 4}), ExitReason.TIMELIMIT, 255),
        (detail("FAILED", statusReason="Host EC2 (instance i-0a1b2c3d) terminated."), ExitReason.LOST, 255),
        (
            detail("FAILED", startedAt=None, stoppedAt=None, container={"reason": "CannotPullContainerError: pull access denied"}),
            ExitReason.ERROR,
            255,
        ),
        (detail("FAILED", startedAt=None, stoppedAt=None, statusReason="cancelled by the night shift"), ExitReason.KILLED, 255),
    ],
)
def test_what_an_ended_job_means(described: dict[str, object], reason: ExitReason, status: int) -> None:
    seen = Seen.from_detail({key: value for key, value in described.items() if value is not None})
    outcome = outcome_of(seen.ending())
    assert (outcome.exit_reason, outcome.exit_status) == (reason, status)
    assert "0f6c2a4e" in outcome.message
    if reason is ExitReason.TIMELIMIT:
        assert "wall time" in outcome.message
    if "statusReason" in described:
        assert str(described["statusReason"]) in outcome.message


def test_wall_time_comes_from_started_and_stopped() -> None:
    assert Seen.from_detail(detail("SUCCEEDED")).wall_time == 4.5
    assert Seen.from_detail({"jobId": "x", "status": "RUNNING"}).wall_time is None
