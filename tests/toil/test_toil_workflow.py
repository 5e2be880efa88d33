"""Real Toil workflows, run with `--batchSystem batchgate` through a batchgate service."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from toil.batchSystems.abstractBatchSystem import InsufficientSystemResources
from toil.common import Toil
from toil.exceptions import FailedJobsException
from toil.job import Job
from toil_jobs import SMALL, fan_out, noop, sleep_for

from batchgate.client import BatchgateClient

WIDTH = 8  # parallel jobs: enough to interleave, few enough for the suite (each is a Toil worker)
GIB = 1024**3


def toil_options(tmp_path: Path, address: str, *extra: str) -> argparse.Namespace:
    """Options as a user's command line gives them."""
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    parser = Job.Runner.getDefaultArgumentParser()
    return parser.parse_args(
        [str(tmp_path / "jobstore"), "--batchSystem", "batchgate", "--batchgateAddress", address, "--workDir", str(work_dir), *extra]
    )


@pytest.mark.slow
def test_a_fan_out_with_a_failing_then_retried_job_runs_to_completion(tmp_path: Path, any_backend_address: str) -> None:
    attempts = tmp_path / "attempts"
    with Toil(toil_options(tmp_path, any_backend_address, "--retryCount", "1")) as toil:
        result = toil.start(Job.wrapJobFn(fan_out, WIDTH, str(attempts), **SMALL))
        workflow_id = toil.config.workflowID

    assert result == sum(number * number for number in range(WIDTH)) + 1000
    assert attempts.read_text().splitlines() == ["attempt", "attempt"]
    # The jobs ran as batchgate jobs in the workflow's job set, the failed attempt among them.
    with BatchgateClient(any_backend_address, job_set=workflow_id) as client:
        updates = list(client.updates(after_sequence=0, timeout=1))
    assert len(updates) >= WIDTH + 3  # the root, the squares, two attempts, the sum
    assert len([update for update in updates if update.exit_status != 0]) == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("resource", "asked", "requested", "available"),
    [("cores", 3, 3, 2.0), ("memory", "8Gi", 8 * GIB, 4 * GIB)],
)
def test_a_job_larger_than_the_backend_fails_at_issue(
    tmp_path: Path, batchgate_address: str, resource: str, asked: object, requested: float, available: float
) -> None:
    with Toil(toil_options(tmp_path, batchgate_address)) as toil:
        with pytest.raises(InsufficientSystemResources) as refused:
            toil.start(Job.wrapJobFn(noop, **{**SMALL, resource: asked}))

    assert refused.value.resource == resource
    assert refused.value.requested == requested
    assert refused.value.available == available
    assert refused.value.batch_system == "batchgate backend 'local'"


@pytest.mark.slow
@pytest.mark.parametrize("batchgate_address", ["gateway"], indirect=True)  # the local backend behind it enforces it
def test_a_job_over_its_wall_time_is_timelimit_in_toils_log_and_double_time_answers(tmp_path: Path, batchgate_address: str) -> None:
    log_file = tmp_path / "toil.log"
    # Walltime as given (the plugin rounds it up to a whole minute unless told otherwise).
    options = toil_options(
        tmp_path, batchgate_address, "--retryCount", "1", "--doubleTime", "True", "--logFile", str(log_file),
        "--batchgateWallTimeRoundUp", "0",
    )  # fmt: skip
    with Toil(options) as toil:
        with pytest.raises(FailedJobsException):
            toil.start(Job.wrapJobFn(sleep_for, 60, walltime=3, **SMALL))

    log = log_file.read_text()
    assert log.count("Exit reason: TIMELIMIT") == 2, log  # the first attempt, then the retry
    assert "We have doubled the walltime of the failed job" in log
