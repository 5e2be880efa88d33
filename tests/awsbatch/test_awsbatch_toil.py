"""A real Toil workflow, `--batchSystem batchgate`, through a gateway to the AWS Batch backend: every
Toil job runs as a container in moto's AWS Batch. The busybox image has no Python, so the job
definition mounts this machine's interpreter, this virtualenv (Toil's worker) and the tests'
job module at the same paths, as a Toil appliance image would carry them."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import RunningService, start_service
from moto_batch import TEST_ARGS, CREDENTIALS, IMAGE, MotoBatch, register_definition

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "toil"))
from toil.common import Toil  # noqa: E402
from toil.job import Job  # noqa: E402
from toil_jobs import SMALL, fan_out  # noqa: E402

import toil_batch_system_batchgate  # noqa: E402, F401  (registers --batchSystem batchgate)
from batchgate.client import BatchgateClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WIDTH = 4
TOIL_DEFINITION = "batchgate-toil-definition"


def toil_mounts(tmp_root: Path) -> dict[str, str]:
    """What a Toil worker needs at the same path in the container."""
    interpreter = Path(os.path.realpath(sys.executable)).parents[1]  # e.g. /usr or a pyenv prefix
    paths = {"/usr": "/usr", "/lib": os.path.realpath("/lib"), "/lib64": os.path.realpath("/lib64")}
    for path in (str(interpreter), sys.prefix, str(ROOT / "tests"), str(tmp_root)):
        paths[path] = path
    return paths


@pytest.fixture
def gateway_to_awsbatch(moto: MotoBatch, tmp_path: Path) -> Iterator[RunningService]:
    register_definition(
        moto, TOIL_DEFINITION, IMAGE, toil_mounts(tmp_path), {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": "/root"}
    )
    local = start_service("local", tmp_path / "local", "--cores", "1", "--memory", "1G")
    args = list(moto.service_args(*TEST_ARGS))
    args[args.index("--awsbatch-job-definition") + 1] = TOIL_DEFINITION
    awsbatch = start_service("awsbatch", tmp_path / "awsbatch", *args, env=CREDENTIALS)
    gateway = start_service("gateway", tmp_path / "gateway", "--backends", f"local={local.address},awsbatch={awsbatch.address}")
    yield gateway
    for service in (gateway, awsbatch, local):
        service.kill()


@pytest.mark.slow
def test_a_toil_fan_out_runs_through_the_gateway_on_aws_batch(gateway_to_awsbatch: RunningService, tmp_path: Path) -> None:
    work_dir, coordination_dir = tmp_path / "work", tmp_path / "coordination"
    work_dir.mkdir()
    coordination_dir.mkdir()
    attempts = tmp_path / "attempts"
    options = Job.Runner.getDefaultArgumentParser().parse_args(
        [
            str(tmp_path / "jobstore"),
            "--batchSystem", "batchgate",
            "--batchgateAddress", gateway_to_awsbatch.address,
            "--batchgateBackend", "awsbatch",
            "--workDir", str(work_dir),
            # Each container has its own /run: workers share the workflow's directory only if they
            # share where they agree on its cleanup (as Toil's AWS Batch system mounts /var/run/user).
            "--coordinationDir", str(coordination_dir),
            "--retryCount", "1",
        ]
    )  # fmt: skip
    with Toil(options) as toil:
        result = toil.start(Job.wrapJobFn(fan_out, WIDTH, str(attempts), **SMALL))
        workflow_id = toil.config.workflowID

    assert result == sum(number * number for number in range(WIDTH)) + 1000
    assert attempts.read_text().splitlines() == ["attempt", "attempt"]
    with BatchgateClient(gateway_to_awsbatch.address, job_set=workflow_id) as client:
        updates = list(client.updates(after_sequence=0, timeout=1))
    assert {update.backend for update in updates} == {"awsbatch"}
    assert len(updates) >= WIDTH + 3 and len([update for update in updates if update.exit_status != 0]) == 1
