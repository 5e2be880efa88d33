"""The plugin's own promises, beyond Toil's suite: one workflow's jobs are its own, wall-time
kills reach Toil as TIMELIMIT, refusals carry the backend's numbers, a lasting deadlock ends the
workflow (a passing one does not), shutdown leaves nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import start_service, wait_until
from toil.batchSystems import DeadlockException
from toil.batchSystems.abstractBatchSystem import BatchJobExitReason, InsufficientSystemResources
from toil.common import Config
from toil.job import JobDescription, Requirer

from batchgate.client import BatchgateClient, job_spec
from toil_batch_system_batchgate.batch_system import BatchgateBatchSystem

GIB = 1024**3
SMALL: dict[str, Any] = {"cores": 0.5, "memory": 64 * 1024**2, "disk": 1024**2, "accelerators": [], "preemptible": False}


def batch_system(address: str, workflow_id: str | None = None) -> BatchgateBatchSystem:
    """The plugin as Toil's leader makes it, with Toil's limits well above the backend's."""
    config = Config()
    config.workflowID = workflow_id or str(uuid.uuid4())
    config.batchgate_address = address
    config.batchgate_wall_time_round_up = 0  # walltime as given: these tests ask for seconds
    return BatchgateBatchSystem(config, maxCores=64, maxMemory=64 * GIB, maxDisk=64 * GIB)


def description(name: str, **requirements: Any) -> JobDescription:
    return JobDescription(requirements={**SMALL, "walltime": 0, **requirements}, jobName=name, unitName=None)


@pytest.fixture
def batch(batchgate_address: str) -> Iterator[BatchgateBatchSystem]:
    plugin = batch_system(batchgate_address)
    yield plugin
    plugin.shutdown()


def test_workflows_sharing_a_service_never_see_each_others_jobs(batchgate_address: str) -> None:
    first, second = batch_system(batchgate_address), batch_system(batchgate_address)
    try:
        sleeper = first.issueBatchJob("sleep 60", description("sleeper"))
        wait_until(lambda: sleeper in first.getRunningBatchJobIDs(), message="the first workflow's job to run")
        assert second.getIssuedBatchJobIDs() == []
        assert second.getRunningBatchJobIDs() == {}

        second.killBatchJobs([sleeper])  # not the second workflow's to kill
        assert sleeper in first.getRunningBatchJobIDs()

        quick = second.issueBatchJob("true", description("quick"))
        update = second.getUpdatedBatchJob(maxWait=60)
        assert update is not None and update.jobID == quick
        assert first.getUpdatedBatchJob(maxWait=1) is None
    finally:
        first.shutdown()
        second.shutdown()


def test_set_env_reaches_the_workflow_s_own_jobs_alone(batchgate_address: str, tmp_path: Path) -> None:
    red, blue = batch_system(batchgate_address), batch_system(batchgate_address)
    try:
        red.setEnv("COLOUR", "red")
        blue.setEnv("COLOUR", "blue")
        for plugin, name in ((red, "red"), (blue, "blue")):
            plugin.issueBatchJob(f'printf %s "$COLOUR" > {tmp_path / name}', description(name))
            update = plugin.getUpdatedBatchJob(maxWait=60)
            assert update is not None and update.exitStatus == 0
        assert (tmp_path / "red").read_text() == "red"
        assert (tmp_path / "blue").read_text() == "blue"
        # Kept by the service for the workflow, not sent with each job.
        with BatchgateClient(batchgate_address, job_set=red.config.workflowID) as service:
            job_id = service.issue(job_spec(f'printf %s "$COLOUR" > {tmp_path / "direct"}'))
            assert job_id in {update.job_id for update in service.updates(after_sequence=0, timeout=5)}
        assert (tmp_path / "direct").read_text() == "red"
    finally:
        red.shutdown()
        blue.shutdown()


def test_a_restarted_leader_answers_only_for_the_jobs_it_issued(batchgate_address: str) -> None:
    workflow_id = str(uuid.uuid4())
    earlier = batch_system(batchgate_address, workflow_id)
    try:
        orphans = {
            earlier.issueBatchJob("sleep 60", description("still running")),
            earlier.issueBatchJob("true", description("finishes")),
        }
        with BatchgateClient(batchgate_address, job_set=workflow_id) as service:
            wait_until(lambda: len(service.issued_job_ids()) == 1, message="the quick job to finish")
            assert set(service.issued_job_ids()) < orphans

        # The earlier leader is gone without shutting down; a restart runs the same workflow.
        restarted = batch_system(batchgate_address, workflow_id)
        try:
            # Toil's leader stops the workflow if these hold a job it did not issue.
            assert restarted.getIssuedBatchJobIDs() == []
            assert restarted.getRunningBatchJobIDs() == {}
            assert restarted.getUpdatedBatchJob(maxWait=1) is None
        finally:
            restarted.shutdown()
    finally:
        earlier.shutdown()


def test_a_job_over_its_wall_time_reaches_toil_as_a_time_limit(batch: BatchgateBatchSystem) -> None:
    job_id = batch.issueBatchJob("sleep 60", description("slow", walltime=1))
    update = batch.getUpdatedBatchJob(maxWait=60)
    assert update is not None and update.jobID == job_id
    assert update.exitReason is BatchJobExitReason.TIMELIMIT  # what Toil's --doubleTime answers
    assert update.wallTime is not None and update.wallTime > 0


@pytest.mark.parametrize(
    ("requirements", "resource", "available"),
    [
        ({"memory": 8 * GIB}, "memory", 4 * GIB),
        ({"accelerators": [{"kind": "gpu", "count": 1}]}, "accelerators", 0),
    ],
)
def test_check_resource_request_reports_the_backends_refusal(
    batch: BatchgateBatchSystem, requirements: dict[str, Any], resource: str, available: int
) -> None:
    with pytest.raises(InsufficientSystemResources) as refused:
        batch.check_resource_request(Requirer({**SMALL, **requirements}))
    assert refused.value.resource == resource
    assert refused.value.available == available
    assert refused.value.batch_system == "batchgate backend 'local'"


def test_shutdown_kills_the_jobs_still_issued(batchgate_address: str) -> None:
    plugin = batch_system(batchgate_address)
    job_id = plugin.issueBatchJob("sleep 60", description("left running"))
    wait_until(lambda: job_id in plugin.getRunningBatchJobIDs(), message="the job to run")
    plugin.shutdown()
    with BatchgateClient(batchgate_address, job_set=plugin.config.workflowID) as service:
        assert service.issued_job_ids() == []


def test_a_deadlock_ends_the_workflow_only_once_it_has_lasted_deadlock_wait(tmp_path: Path) -> None:
    service = start_service("local", tmp_path, "--cores", "2", "--memory", "2G", "--disk", "10G")
    plugin = batch_system(service.address)
    try:
        plugin.issueBatchJob("sleep 600", description("too big", memory=1536 * 1024**2))
        service.stop()
        # Back with less memory than the queued job needs: it can never start.
        service = start_service("local", tmp_path, "--cores", "2", "--memory", "1G", "--disk", "10G",
                                listen=service.address, log_suffix="-smaller")  # fmt: skip

        plugin.config.deadlockWait = 3600
        assert plugin.getUpdatedBatchJob(maxWait=1) is None
        plugin.config.deadlockWait = 0
        with pytest.raises(DeadlockException, match="larger than this machine's budget"):
            plugin.getUpdatedBatchJob(maxWait=1)
    finally:
        plugin.shutdown()
        service.kill()
