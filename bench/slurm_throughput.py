"""Slurm backend figures, against the real Slurm that scripts/slurm-up starts:

1. submit throughput of the driver (sbatch from a small thread pool) against a plain loop of the
   very same sbatch commands, one after another, in the same run;
2. scheduler commands per poll cycle with 1, 100 and 1000 live jobs (counted by wrapping the
   driver's command runner and its poll).

Jobs are submitted held (--hold), so they wait in the queue without running; all are cancelled
at the end.

    .venv/bin/python bench/slurm_throughput.py [--jobs 200] [--seconds 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from driver_recording import HeldJobs  # noqa: E402

from batchgate.driver import Job  # noqa: E402
from batchgate.hpc import CountingRunner, Runner, run_command  # noqa: E402
from batchgate.services.slurm.driver import SlurmDriver  # noqa: E402
from batchgate.v1 import batchgate_pb2 as pb  # noqa: E402

HELD = pb.SlurmOptions(extra_args=["--hold"])



def held_jobs(count: int) -> list[Job]:
    return [
        Job(job_id=i, command="true", name=f"bench-{i}", cores=1, memory=16 * 1024**2, disk=0, options=HELD) for i in range(1, count + 1)
    ]


def attached(poll_interval: float, runner: Runner = run_command) -> SlurmDriver:
    driver = SlurmDriver(poll_interval=poll_interval, command_timeout=60, runner=runner)
    driver.attach(HeldJobs("slurm"), uuid.uuid4().hex[:12])
    return driver


def cancel(backing_ids: Sequence[str]) -> None:
    for start in range(0, len(backing_ids), 500):
        subprocess.run(["scancel", *backing_ids[start : start + 500]], check=True)


def submit_throughput(count: int) -> None:
    # Two service instances: the driver would take the loop's jobs (same tags) for its own.
    looping, driver = attached(poll_interval=3600), attached(poll_interval=3600)  # no polling: submission only
    jobs = held_jobs(count)

    started = time.monotonic()
    looped = []
    for job in jobs:
        command = looping.submit_command(job)
        done = subprocess.run(command.argv, input=command.stdin, capture_output=True, text=True, check=True)
        looped.append(looping.parse_submitted(done.stdout))
    loop_rate = count / (time.monotonic() - started)

    started = time.monotonic()
    submitted = list(driver.submit(jobs))
    driver_rate = count / (time.monotonic() - started)
    looping.close()
    driver.close()
    cancel(looped + submitted)
    assert all(submitted), "the driver failed to submit some jobs"
    print(f"submitting {count} jobs: plain sbatch loop {loop_rate:.1f} jobs/s, batchgate driver {driver_rate:.1f} jobs/s")
    print(f"ratio (driver / loop): {driver_rate / loop_rate:.2f}x")


def commands_per_cycle(live: int, seconds: float) -> None:
    counting = CountingRunner()
    driver = attached(poll_interval=0.5, runner=counting)
    submitted = list(driver.submit(held_jobs(live)))
    counting.commands.clear()
    cycles_before = driver.poll_cycles
    time.sleep(seconds)
    driver.close()
    cycles = driver.poll_cycles - cycles_before
    cancel(submitted)
    total = sum(counting.commands.values())
    kinds = ", ".join(f"{name} {count}" for name, count in sorted(counting.commands.items()))
    print(f"{live:>9}  {cycles:>11}  {total:>18}  {total / max(cycles, 1):>9.2f}  ({kinds})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200, help="jobs per submit run")
    parser.add_argument("--seconds", type=float, default=5.0, help="polling window per job count")
    args = parser.parse_args()
    submit_throughput(args.jobs)
    print()
    print("live jobs  poll cycles  scheduler commands  per cycle")
    for live in (1, 100, 1000):
        commands_per_cycle(live, args.seconds)


if __name__ == "__main__":
    main()
