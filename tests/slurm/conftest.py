"""Fixtures for the Slurm driver tests: the cluster, drivers attached to recorders, and the two
slow jobs that start with the session so their minute or more overlaps every other test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from slurm_cluster import Recorder, cancel_tagged, ensure_slurm

from batchgate.driver import Job, SubmittedJob
from batchgate.services.slurm.driver import SlurmDriver

TEST_POLL_INTERVAL = 0.2


def make_job(job_id: int, command: str, **fields: object) -> Job:
    """A small job: one core, 64 MiB, no disk, unless told otherwise."""
    defaults: dict[str, object] = {"name": f"test-{job_id}", "cores": 1.0, "memory": 64 * 1024**2, "disk": 0}
    return Job(job_id=job_id, command=command, **{**defaults, **fields})  # type: ignore[arg-type]


@dataclass
class Attached:
    driver: SlurmDriver
    events: Recorder
    instance_id: str

    def submit(self, *jobs: Job) -> list[SubmittedJob]:
        backing_ids = self.driver.submit(jobs)
        assert all(backing_ids), f"sbatch refused a job: {self.events.ends}"
        return [SubmittedJob(job, backing_id) for job, backing_id in zip(jobs, backing_ids, strict=True)]


DriverFactory = Callable[..., Attached]


@pytest.fixture(scope="session")
def slurm() -> None:
    ensure_slurm()


@pytest.fixture
def attach(slurm: None) -> Iterator[DriverFactory]:
    """Make SlurmDrivers attached to recorders; each gets a fresh instance id unless given one.
    Whatever they leave in Slurm is cancelled afterwards."""
    made: list[Attached] = []

    def factory(instance_id: str = "", **options: object) -> Attached:
        options.setdefault("poll_interval", TEST_POLL_INTERVAL)
        options.setdefault("command_timeout", 30.0)
        attached = Attached(SlurmDriver(**options), Recorder(), instance_id or uuid.uuid4().hex[:12])  # type: ignore[arg-type]
        attached.driver.attach(attached.events, attached.instance_id)
        made.append(attached)
        return attached

    yield factory
    for attached in made:
        attached.driver.close()
    for instance_id in {attached.instance_id for attached in made}:
        cancel_tagged(instance_id)


@dataclass
class SlowJobs:
    """Submitted when the session starts: a job over its one-minute limit (Slurm enforces time
    limits only every 30 s), and a quick job whose driver closed at once, to be adopted after
    Slurm has dropped it from the queue (MinJobAge, then a purge cycle of up to a minute)."""

    timed: Attached
    over_time: SubmittedJob
    forgotten_instance: str
    forgotten: SubmittedJob


@pytest.fixture(scope="session", autouse=True)
def slow_jobs(slurm: None) -> Iterator[SlowJobs]:
    # A long command timeout: this driver must ride out the controller outage another test makes.
    timed = Attached(SlurmDriver(poll_interval=TEST_POLL_INTERVAL, command_timeout=120.0), Recorder(), uuid.uuid4().hex[:12])
    timed.driver.attach(timed.events, timed.instance_id)
    (over_time,) = timed.submit(make_job(1, "sleep 600", wall_time=1.0))

    first = Attached(SlurmDriver(poll_interval=3600.0, command_timeout=30.0), Recorder(), uuid.uuid4().hex[:12])
    first.driver.attach(first.events, first.instance_id)
    (forgotten,) = first.submit(make_job(1, "exit 7"))
    first.driver.close()

    yield SlowJobs(timed, over_time, first.instance_id, forgotten)
    timed.driver.close()
    cancel_tagged(timed.instance_id)
