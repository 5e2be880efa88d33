"""toil-cwl-runner through the plugin, with a gateway in front of a local backend, as a CWL user
would run it: on CWL documents written for these tests (tests/toil/cwl) and the README's example."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from toil_services import VENV_PATH, running_batchgate

CWL = Path(__file__).parent / "cwl"
EXAMPLES = Path(__file__).parents[2] / "examples" / "cwl"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_batchgate("gateway", tmp_path_factory.mktemp("cwl")) as address:
        yield address


def toil_cwl_runner(address: str, work: Path, *documents: Path, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    work.mkdir()
    command = [
        "toil-cwl-runner",
        "--batchSystem", "batchgate",
        "--batchgateAddress", address,
        "--jobStore", str(work / "jobstore"),
        "--outdir", str(work / "out"),
        *extra,
        *map(str, documents),
    ]  # fmt: skip
    environment = {**os.environ, "PATH": VENV_PATH}
    return subprocess.run(command, cwd=work, env=environment, capture_output=True, text=True, timeout=300)


def test_a_scatter_runs_one_job_per_element(gateway_address: str, tmp_path: Path) -> None:
    run = toil_cwl_runner(gateway_address, tmp_path / "scatter", EXAMPLES / "squares.cwl", EXAMPLES / "squares.yml")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"squares": [1, 4, 9, 16, 25]}


def test_an_expression_tool_is_not_stopped_by_its_time_limit(gateway_address: str, tmp_path: Path) -> None:
    # CWL ignores ToolTimeLimit for an ExpressionTool; Toil still gives the job a 3 s walltime,
    # which the plugin rounds up to a minute, as Toil's Slurm batch system does.
    run = toil_cwl_runner(gateway_address, tmp_path / "expression", CWL / "slow-expression.cwl")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"status": "Done"}
    assert "Exit reason" not in run.stderr  # no attempt failed


def test_a_tool_over_its_time_limit_fails_the_workflow(gateway_address: str, tmp_path: Path) -> None:
    run = toil_cwl_runner(gateway_address, tmp_path / "over-time", CWL / "over-time.cwl", extra=("--retryCount", "0"))
    assert run.returncode != 0
    # cwltool, inside the Toil worker, stops the tool at its limit: before the backend's limit,
    # which is the same limit rounded up. Toil's log says so, and the worker's failure.
    assert "exceeded time limit of 3 seconds" in run.stderr
    assert "Exit reason: FAILED" in run.stderr
