"""Endings that take Slurm a minute or more. Their jobs start with the session (see conftest.py)
and this file runs last, so the waiting overlaps the other tests."""

from __future__ import annotations

import time

import pytest
from slurm_cluster import DriverFactory, SlowJobs, squeue

from batchgate.endings import ExitReason

pytestmark = pytest.mark.slow


def test_a_job_over_its_time_limit_is_timelimit(slow_jobs: SlowJobs) -> None:
    # A one-minute limit, checked by slurmctld every 30 s, then KillWait: 60 to 100 s in all.
    outcome = slow_jobs.timed.events.outcome(slow_jobs.over_time.job.job_id, timeout=150)
    assert outcome.exit_reason is ExitReason.TIMELIMIT
    assert "TIMEOUT" in outcome.message
    assert outcome.wall_time is not None and outcome.wall_time >= 60


def test_a_job_that_left_the_queue_is_adopted_from_the_accounting_record(slow_jobs: SlowJobs, attach: DriverFactory) -> None:
    backing_id = slow_jobs.forgotten.backing_id
    deadline = time.monotonic() + 120
    while backing_id in squeue("--states=all", "--Format=JobID").split():
        assert time.monotonic() < deadline, "Slurm kept the finished job in its queue"
        time.sleep(1)

    again = attach(slow_jobs.forgotten_instance)
    again.driver.adopt([slow_jobs.forgotten])
    outcome = again.events.outcome(slow_jobs.forgotten.job.job_id)
    assert (outcome.exit_reason, outcome.exit_status) == (ExitReason.FAILED, 7)
    time.sleep(5 * again.driver.poll_interval)
    assert again.events.ended_ids()[slow_jobs.forgotten.job.job_id] == 1
