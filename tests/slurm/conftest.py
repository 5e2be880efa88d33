"""Fixtures for the Slurm driver tests: the cluster, drivers attached to recorders, and the two
slow jobs that start with the session so their minute or more overlaps every other test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slurm_cluster import Attached, DriverFactory, SlowJobs, attach_driver, cancel_tagged, ensure_slurm, make_job


@pytest.fixture(scope="session")
def slurm() -> None:
    ensure_slurm()


@pytest.fixture
def attach(slurm: None) -> Iterator[DriverFactory]:
    """Make attached SlurmDrivers (see attach_driver); whatever they leave in Slurm is cancelled."""
    made: list[Attached] = []

    def factory(instance_id: str = "", **options: object) -> Attached:
        made.append(attach_driver(instance_id, **options))
        return made[-1]

    yield factory
    for attached in made:
        attached.driver.close()
    for instance_id in {attached.instance_id for attached in made}:
        cancel_tagged(instance_id)


@pytest.fixture(scope="session", autouse=True)
def slow_jobs(slurm: None) -> Iterator[SlowJobs]:
    # A long command timeout: this driver must ride out the controller outage another test makes.
    timed = attach_driver(command_timeout=120.0)
    (over_time,) = timed.submit(make_job(1, "sleep 600", wall_time=1.0))

    first = attach_driver(poll_interval=3600.0)
    (forgotten,) = first.submit(make_job(1, "exit 7"))
    first.driver.close()

    yield SlowJobs(timed, over_time, first.instance_id, forgotten)
    timed.driver.close()
    cancel_tagged(timed.instance_id)
