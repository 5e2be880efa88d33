"""LSF backend figures, against the fake LSF of the tests (tests/lsf/fake, written from IBM's
documentation; no LSF can be had here), in a fresh state directory:

1. submit throughput of the driver (bsub from a small thread pool) against a plain loop of the
   very same bsub commands, one after another, on the same fake, in alternating runs;
2. scheduler commands per poll cycle with 1, 100 and 1000 live jobs (counted by wrapping the
   driver's command runner and its poll).

Jobs are submitted held (bsub -H), so they wait in the queue without running; all are killed at
the end. The fake's commands are Python scripts that answer at once, after some 30 ms of CPU
each: on a 2-core machine a loop of them is bound by CPU, which more bsub at once cannot beat by
much. A real bsub is a small C program that waits for mbatchd's answer over the network, so the
submissions are measured twice: with the fake answering at once, and with it waiting
`--answer-delay` (100 ms) before each answer, as for mbatchd's round trip. The figures say how the
driver uses LSF, not how fast a real LSF answers.

    .venv/bin/python bench/lsf_throughput.py [--jobs 50] [--rounds 5] [--seconds 5] [--answer-delay 0.1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "lsf"))

from driver_recording import HeldJobs  # noqa: E402
from lsf_cluster import FakeLsf  # noqa: E402

from batchgate.driver import Job  # noqa: E402
from batchgate.hpc import CountingRunner, Runner  # noqa: E402
from batchgate.services.lsf.driver import LsfDriver  # noqa: E402
from batchgate.v1 import batchgate_pb2 as pb  # noqa: E402

HELD = pb.LsfOptions(extra_args=["-H"])


def held_jobs(count: int) -> list[Job]:
    return [
        Job(job_id=i, command="true", name=f"bench-{i}", cores=1, memory=16 * 1024**2, disk=0, options=HELD) for i in range(1, count + 1)
    ]


def attached(runner: Runner, poll_interval: float) -> LsfDriver:
    driver = LsfDriver(poll_interval=poll_interval, command_timeout=60, runner=runner)
    driver.attach(HeldJobs("lsf"), uuid.uuid4().hex[:12])
    return driver


def kill(fake: FakeLsf, backing_ids: Sequence[str]) -> None:
    for start in range(0, len(backing_ids), 500):
        fake.run("bkill", *backing_ids[start : start + 500])


def submit_rate(fake: FakeLsf, count: int, *, loop: bool) -> float:
    """Jobs a second, submitted by a plain loop of bsub commands or by the driver."""
    driver = attached(fake.runner, 3600)  # no polling: submission only; a new instance each run
    jobs = held_jobs(count)
    started = time.monotonic()
    if loop:
        submitted = []
        for job in jobs:
            command = driver.submit_command(job)  # run just as the driver runs it
            submitted.append(driver.parse_submitted(fake.runner(command.argv, command.stdin, 60)))
    else:
        submitted = list(driver.submit(jobs))
    rate = count / (time.monotonic() - started)
    driver.close()
    kill(fake, submitted)
    assert all(submitted), "some jobs were not submitted"
    return rate


def submit_throughput(fake: FakeLsf, count: int, rounds: int) -> None:
    # The machine's speed drifts: each driver run is compared with the loop runs either side.
    # As on a login node with LSF's profile sourced, LSF_ENVDIR names lsf.conf: the unit of
    # memory limits is read from it, by the loop's commands and the driver's alike.
    os.environ["LSF_ENVDIR"] = fake.env["LSF_ENVDIR"]
    loops = [submit_rate(fake, count, loop=True)]
    ratios, drivers = [], []
    for _ in range(rounds):
        drivers.append(submit_rate(fake, count, loop=False))
        loops.append(submit_rate(fake, count, loop=True))
        ratios.append(drivers[-1] / ((loops[-2] + loops[-1]) / 2))
    delay = json.loads((fake.root / "config.json").read_text())["answer_delay"]
    print(f"bsub answering after {delay * 1000:.0f} ms, {count} jobs x {rounds} rounds:")
    print(f"  plain bsub loop {statistics.median(loops):.1f} jobs/s, batchgate driver {statistics.median(drivers):.1f} jobs/s (medians)")
    print(f"  ratio (driver / loop): {statistics.median(ratios):.2f}x (rounds {min(ratios):.2f}-{max(ratios):.2f})  (target >= 1.5x)")


def commands_per_cycle(fake: FakeLsf, live: int, seconds: float) -> None:
    counting = CountingRunner(fake.runner)
    driver = attached(counting, poll_interval=0.5)
    submitted = list(driver.submit(held_jobs(live)))
    counting.commands.clear()
    cycles_before = driver.poll_cycles
    time.sleep(seconds)
    driver.close()
    cycles = driver.poll_cycles - cycles_before
    kill(fake, submitted)
    total = sum(counting.commands.values())
    kinds = ", ".join(f"{name} {count}" for name, count in sorted(counting.commands.items()))
    print(f"{live:>9}  {cycles:>11}  {total:>18}  {total / max(cycles, 1):>9.2f}  ({kinds})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=50, help="jobs per submit run")
    parser.add_argument("--rounds", type=int, default=5, help="driver runs, each between two loop runs")
    parser.add_argument("--seconds", type=float, default=5.0, help="polling window per job count")
    parser.add_argument("--answer-delay", type=float, default=0.1, help="mbatchd's round trip modelled in the second run, seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batchgate-lsf-bench-") as root:
        fake = FakeLsf(Path(root) / "at-once")
        submit_throughput(fake, args.jobs, args.rounds)
        submit_throughput(FakeLsf(Path(root) / "round-trip", answer_delay=args.answer_delay), args.jobs, args.rounds)
        print()
        print("live jobs  poll cycles  scheduler commands  per cycle")
        for live in (1, 100, 1000):
            commands_per_cycle(fake, live, args.seconds)


if __name__ == "__main__":
    main()
