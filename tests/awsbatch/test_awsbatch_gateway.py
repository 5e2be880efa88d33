"""A gateway with a local backend and the AWS Batch backend behind it, all real processes (and
moto's AWS Batch running the containers): jobs go where they are named, or to the first backend
that can run what they ask for, and one stream carries both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import RunningService, collect_updates, spec, start_service
from moto_batch import TEST_ARGS, CREDENTIALS, MotoBatch

from batchgate.v1 import batchgate_pb2 as pb


@pytest.fixture
def gateway(moto: MotoBatch, tmp_path: Path) -> Iterator[tuple[RunningService, RunningService, RunningService]]:
    local = start_service("local", tmp_path / "local", "--cores", "1", "--memory", "2G", "--kill-grace", "1")
    awsbatch = start_service("awsbatch", tmp_path / "awsbatch", *moto.service_args(*TEST_ARGS), env=CREDENTIALS)
    gateway = start_service("gateway", tmp_path / "gateway", "--backends", f"local={local.address},awsbatch={awsbatch.address}")
    yield gateway, local, awsbatch
    for service in (gateway, awsbatch, local):
        service.kill()


def test_jobs_go_to_aws_batch_by_name_and_by_what_they_ask_for(gateway: tuple[RunningService, RunningService, RunningService]) -> None:
    front, local, awsbatch = gateway
    stub = front.stub()
    named, two_cores, with_options, small = stub.IssueJobs(
        pb.IssueJobsRequest(
            specs=[
                spec("exit 3", backend="awsbatch"),
                spec("true", cores=2),  # more than local's one core; AWS's m5.large has two
                spec("true", aws_batch=pb.AwsBatchOptions(job_queue="batchgate-test-queue")),  # only awsbatch takes these
                spec("true"),  # fits the first backend
            ]
        )
    ).job_ids

    merged = {update.job_id: update for update in collect_updates(stub, 4, timeout=60)}

    assert {job_id: merged[job_id].backend for job_id in merged} == {
        named: "awsbatch",
        two_cores: "awsbatch",
        with_options: "awsbatch",
        small: "local",
    }
    assert (merged[named].exit_reason, merged[named].exit_status) == (pb.EXIT_REASON_FAILED, 3)
    # The AWS Batch backend ran exactly its three, and the gateway passed on AWS's job ids.
    ran_on_aws = {update.backing_id for update in collect_updates(awsbatch.stub(), 3)}
    assert ran_on_aws == {merged[job_id].backing_id for job_id in (named, two_cores, with_options)}
    (ran_locally,) = collect_updates(local.stub(), 1)
    assert merged[small].backing_id == ran_locally.backing_id
