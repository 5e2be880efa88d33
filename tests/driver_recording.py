"""What the tests of command-line scheduler drivers (Slurm, LSF) share: a recorder of the
reports a driver makes, small jobs, and a driver attached to a recorder as the kit attaches it;
and, for the benchmarks, events of jobs that never end."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass

from batchgate.driver import Ending, Job, SubmittedJob
from batchgate.endings import Outcome, outcome_of
from batchgate.hpc import CommandLineDriver

MIB = 1024**2


class Recorder:
    """JobEvents that keeps every report a driver makes, for tests to wait on and count, as the
    kit would publish it (the exit-reason rule applied). `describe` adds the scheduler's own view
    to a failure (its queue, say)."""

    def __init__(self, name: str, describe: Callable[[], str] = lambda: "") -> None:
        self.name = name
        self.describe = describe
        self._changed = threading.Condition()
        self.starts: dict[int, tuple[str | None, float | None]] = {}
        self.ends: list[tuple[int, Outcome]] = []

    def started(self, job_id: int, *, backing_id: str | None = None, at: float | None = None) -> None:
        with self._changed:
            self.starts[job_id] = (backing_id, at)
            self._changed.notify_all()

    def ended(self, job_id: int, ending: Ending) -> None:
        with self._changed:
            self.ends.append((job_id, outcome_of(ending)))
            self._changed.notify_all()

    def checkpoint(self, key: str, value: int) -> None:
        raise AssertionError("a scheduler driver keeps no checkpoints")

    def checkpoints(self) -> dict[str, int]:
        return {}

    def wait_started(self, job_id: int, timeout: float = 30.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: job_id in self.starts, timeout):
                raise AssertionError(f"job {job_id} did not start within {timeout} s")

    def outcome(self, job_id: int, timeout: float = 30.0) -> Outcome:
        """The one outcome reported for `job_id` (waiting for it)."""
        with self._changed:
            if not self._changed.wait_for(lambda: job_id in self.ended_ids(), timeout):
                raise AssertionError(f"job {job_id} did not end within {timeout} s; reports so far: {self.ends}\n{self.describe()}")
            (outcome,) = [outcome for ended, outcome in self.ends if ended == job_id]
            return outcome

    def ended_ids(self) -> collections.Counter[int]:
        return collections.Counter(job_id for job_id, _ in self.ends)


class HeldJobs:
    """JobEvents for jobs that must never end (a benchmark's held jobs): starts and checkpoints
    are dropped, an end stops the run."""

    def __init__(self, name: str) -> None:
        self.name = name

    def started(self, job_id: int, *, backing_id: str | None = None, at: float | None = None) -> None: ...

    def ended(self, job_id: int, ending: Ending) -> None:
        raise SystemExit(f"job {job_id} ended unexpectedly: {ending}")

    def checkpoint(self, key: str, value: int) -> None: ...

    def checkpoints(self) -> dict[str, int]:
        return {}


def make_job(job_id: int, command: str, **fields: object) -> Job:
    """A small job: one core, 64 MiB, no disk, unless told otherwise."""
    defaults: dict[str, object] = {"name": f"test-{job_id}", "cores": 1.0, "memory": 64 * MIB, "disk": 0}
    return Job(job_id=job_id, command=command, **{**defaults, **fields})  # type: ignore[arg-type]


@dataclass
class Attached:
    """A driver attached to a recorder, as the kit would attach it."""

    driver: CommandLineDriver
    events: Recorder
    instance_id: str

    def submit(self, *jobs: Job) -> list[SubmittedJob]:
        backing_ids = self.driver.submit(jobs)
        assert all(backing_ids), f"the scheduler refused a job: {self.events.ends}"
        return [SubmittedJob(job, backing_id) for job, backing_id in zip(jobs, backing_ids, strict=True)]


def attach(driver: CommandLineDriver, events: Recorder, instance_id: str) -> Attached:
    driver.attach(events, instance_id)
    return Attached(driver, events, instance_id)
