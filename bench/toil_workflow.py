"""A Toil workflow of trivial jobs, run with Toil's own single_machine batch system and with
`--batchSystem batchgate` (the gateway in front of a local backend), in the same run on the same
machine; prints both wall times and the ratio.

    .venv/bin/python bench/toil_workflow.py [--jobs 500] [--cores 2]

The workflow is one root job fanning out to `jobs` children that do nothing, so the figure is
what running a job costs each batch system: Toil's worker start-up, plus for batchgate the gRPC
round trips and both services' bookkeeping. Both get the same cores in all (single_machine's
--maxCores, the local backend's --cores) and the same per-job requirements.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from toil.common import Toil
from toil.job import Job

JOB = {"cores": 0.1, "memory": "16Mi", "disk": "1Mi"}


def fan_out(job: Job, width: int) -> None:
    for _ in range(width):
        job.addChildJobFn(nothing, **JOB)


def nothing(job: Job) -> None:
    """The job whose cost is only the batch system's and Toil's."""


def run_workflow(work: Path, jobs: int, cores: int, *batch_system: str) -> float:
    """Seconds from the start of the Toil run to its end."""
    work.mkdir()
    options = Job.Runner.getDefaultArgumentParser().parse_args(
        [str(work / "jobstore"), "--workDir", str(work), "--maxCores", str(cores), "--logLevel", "ERROR", *batch_system]
    )
    started = time.perf_counter()
    with Toil(options) as toil:
        toil.start(Job.wrapJobFn(fan_out, jobs, **JOB))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--cores", type=int, default=2, help="cores in all, for either batch system")
    args = parser.parse_args()

    # Toil starts workers as `_toil_worker`, from PATH: as from a shell with this venv active.
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from harness import start_service

    import toil_batch_system_batchgate  # noqa: F401  (registers --batchSystem batchgate)

    with tempfile.TemporaryDirectory(prefix="bench-toil-") as scratch:
        root = Path(scratch)
        single_machine = run_workflow(root / "single_machine", args.jobs, args.cores, "--batchSystem", "single_machine")
        local = start_service("local", root / "local", "--cores", str(args.cores), "--log-level", "WARNING")
        gateway = start_service("gateway", root / "gateway", "--backends", f"local={local.address}", "--log-level", "WARNING")
        try:
            batchgate = run_workflow(
                root / "batchgate", args.jobs, args.cores, "--batchSystem", "batchgate", "--batchgateAddress", gateway.address
            )
        finally:
            gateway.stop()
            local.stop()

    print(f"Toil workflow of {args.jobs} trivial jobs ({JOB['cores']} cores each, {args.cores} cores in all), one run:")
    print(f"  single_machine                  {single_machine:8.1f} s")
    print(f"  batchgate (gateway + local)     {batchgate:8.1f} s")
    print(f"  batchgate / single_machine      {batchgate / single_machine:8.2f}")


if __name__ == "__main__":
    main()
