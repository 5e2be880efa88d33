"""The driver on its own, attached to a recorder as the kit would attach it, against moto: what it
asks of AWS Batch, and that no job is ever submitted twice."""

from __future__ import annotations

import time

from awsbatch_proxy import AnswerLosingProxy
from awsbatch_recorder import DriverFactory, Recorder
from driver_recording import make_job
from moto_batch import QUEUE, MotoBatch, set_job_transitions

from batchgate.endings import ExitReason
from batchgate.services.awsbatch.driver import CHECKPOINT


def tagged(moto: MotoBatch, instance_id: str) -> list[str]:
    """The batchgate job ids of the AWS jobs that carry `instance_id`'s tag, one per AWS job."""
    batch = moto.client()
    ids = [s["jobId"] for s in batch.list_jobs(jobQueue=QUEUE, filters=[{"name": "AFTER_CREATED_AT", "values": ["0"]}])["jobSummaryList"]]
    found: list[str] = []
    for start in range(0, len(ids), 100):
        for job in batch.describe_jobs(jobs=ids[start : start + 100])["jobs"]:
            if job["tags"].get("batchgate:instance") == instance_id:
                found.append(job["tags"]["batchgate:job"])
    return found


def test_a_submission_whose_answer_was_lost_is_found_not_repeated(moto: MotoBatch, attach: DriverFactory) -> None:
    proxy = AnswerLosingProxy(moto.endpoint)
    try:
        driver, events = attach(instance_id="lost-answer", endpoint_url=proxy.endpoint)
        job = make_job(1, "exit 5")
        proxy.lose_answers = 1

        # AWS took the job, but the answer never came: botocore must not send it again, and the
        # kit is told to offer it later.
        assert list(driver.submit([job])) == [None]
        assert proxy.submits_seen == 1
        assert tagged(moto, "lost-answer") == ["1"]

        # Offered again, the driver looks for it by its tag instead of submitting it again.
        (backing_id,) = driver.submit([job])
        assert backing_id and proxy.submits_seen == 1
        assert tagged(moto, "lost-answer") == ["1"]
        outcome = events.outcome(1)
        assert (outcome.exit_reason, outcome.exit_status) == (ExitReason.FAILED, 5)
    finally:
        proxy.close()


def test_jobs_an_earlier_run_submitted_unrecorded_are_taken_back(moto: MotoBatch, attach: DriverFactory) -> None:
    # An earlier run of instance "census" submitted job 7 and stopped before recording it.
    batch = moto.client()
    earlier = batch.submit_job(
        jobName="test-7",
        jobQueue=QUEUE,
        jobDefinition="batchgate-test-definition",
        containerOverrides={"command": ["/bin/sh", "-c", "exit 7"]},
        tags={"batchgate:instance": "census", "batchgate:job": "7"},
    )["jobId"]
    events = Recorder(checkpoints={CHECKPOINT: int(time.time()) - 5})
    driver, _ = attach(instance_id="census", events=events)

    backing_ids = driver.submit([make_job(7, "true"), make_job(8, "true")])

    assert backing_ids[0] == earlier and backing_ids[1] and backing_ids[1] != earlier
    assert driver.calls.counts["submit_job"] == 1  # job 8 alone
    assert sorted(tagged(moto, "census")) == ["7", "8"]
    assert events.outcome(7).exit_status == 7 and events.outcome(8).exit_reason is ExitReason.FINISHED


def test_one_describe_call_per_hundred_live_jobs_per_poll(own_moto: MotoBatch, attach: DriverFactory) -> None:
    # Jobs that stay SUBMITTED (moto moves them on only when told): live, and no containers.
    set_job_transitions(own_moto, {"progression": "manual", "times": 10**9})
    driver, events = attach(endpoint_url=own_moto.endpoint, poll_interval=3600)
    assert all(driver.submit([make_job(job_id, "true") for job_id in range(1, 151)]))
    before = dict(driver.calls.counts)

    driver.poll()

    calls = {operation: count - before.get(operation, 0) for operation, count in driver.calls.counts.items()}
    assert {operation: count for operation, count in calls.items() if count} == {"describe_jobs": 2}
    assert "150 SUBMITTED" in driver.scheduling_status().message
    assert not events.ends
