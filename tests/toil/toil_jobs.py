"""Job functions for the Toil workflows the tests run. Toil's workers import this module by
name, so it lives apart from the tests and imports nothing from them."""

from __future__ import annotations

import time
from pathlib import Path

from toil.job import Job

SMALL = {"cores": 0.5, "memory": "256M", "disk": "16M"}  # a Toil worker with cwltool at hand needs more than 64M (Slurm enforces it)


def fan_out(job: Job, width: int, attempts_log: str) -> int:
    """`width` squares and one job that fails on its first attempt, then their sum."""
    results = [job.addChildJobFn(square, number, **SMALL).rv() for number in range(width)]
    results.append(job.addChildJobFn(fail_first_attempt, attempts_log, **SMALL).rv())
    return job.addFollowOnJobFn(total, results, **SMALL).rv()


def square(job: Job, number: int) -> int:
    return number * number


def total(job: Job, numbers: list[int]) -> int:
    return sum(numbers)


def fail_first_attempt(job: Job, attempts_log: str) -> int:
    """Fails the first time it runs; Toil must retry it. Returns 1000 when it succeeds."""
    log = Path(attempts_log)
    with log.open("a") as attempts:
        attempts.write("attempt\n")
    if len(log.read_text().splitlines()) == 1:
        raise RuntimeError("failing on purpose, the first time only")
    return 1000


def noop(job: Job) -> None:
    """Does nothing; what it asks for is the point."""


def sleep_for(job: Job, seconds: float) -> None:
    """Outlasts a wall time shorter than `seconds`."""
    time.sleep(seconds)
