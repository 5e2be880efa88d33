"""Routing through the gateway, by name and by capability, over two real local backends with
different budgets; the merged stream, the fan-out queries and the per-backend health."""

from __future__ import annotations

import grpc
import pytest
from deployments import BIG_CORES, SMALL_CORES, Deployment
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import collect_updates, spec, updates_within, wait_until

from batchgate.errors import InsufficientSystemResources, InvalidArgument, from_rpc_error
from batchgate.v1 import batchgate_pb2 as pb


def refused(call: object, request: object) -> BaseException:
    with pytest.raises(grpc.RpcError) as caught:
        call(request)  # type: ignore[operator]
    return from_rpc_error(caught.value)


def test_jobs_go_where_named_and_one_stream_carries_both(deployment: Deployment) -> None:
    stub = deployment.gateway.stub()
    to_small, to_big = stub.IssueJobs(
        pb.IssueJobsRequest(specs=[spec("echo small", backend="local-small"), spec("echo big", backend="local-big")])
    ).job_ids

    merged = {update.job_id: update for update in collect_updates(stub, 2)}

    assert merged[to_small].backend == "local-small" and merged[to_big].backend == "local-big"
    # Each backend ran exactly its own job, and the gateway passed on the backend's own ids.
    (ran_on_small,) = collect_updates(deployment.small.stub(), 1)
    (ran_on_big,) = collect_updates(deployment.big.stub(), 1)
    assert merged[to_small].backing_id == ran_on_small.backing_id
    assert merged[to_big].backing_id == ran_on_big.backing_id
    assert not updates_within(deployment.small.stub(), 1.0, after=ran_on_small.sequence)


def test_a_job_naming_no_backend_goes_to_the_first_that_fits(deployment: Deployment) -> None:
    stub = deployment.gateway.stub()
    fits_both, too_big_for_small = stub.IssueJobs(
        pb.IssueJobsRequest(specs=[spec("true", cores=SMALL_CORES), spec("true", cores=SMALL_CORES + 1)])
    ).job_ids

    backends = {update.job_id: update.backend for update in collect_updates(stub, 2)}

    assert backends == {fits_both: "local-small", too_big_for_small: "local-big"}


def test_check_job_says_where_a_job_would_go_and_why_not_elsewhere(deployment: Deployment) -> None:
    stub = deployment.gateway.stub()
    answer = stub.CheckJob(pb.CheckJobRequest(spec=spec("true", cores=2)))
    assert answer.accepted and answer.backend == "local-big"
    (refusal,) = answer.refusals
    assert (refusal.backend, refusal.resource, refusal.requested, refusal.available) == ("local-small", "cores", 2, SMALL_CORES)
    # A dry run: nothing was issued.
    assert not stub.ListIssuedJobs(pb.ListIssuedJobsRequest()).job_ids


def test_a_job_no_backend_can_run_is_refused_naming_each_refusal(deployment: Deployment) -> None:
    stub = deployment.gateway.stub()
    too_big = spec("true", cores=BIG_CORES * 2)

    error = refused(stub.IssueJob, pb.IssueJobRequest(spec=too_big))

    assert isinstance(error, InsufficientSystemResources) and error.resource == "cores"
    assert "'local-small'" in error.message and "'local-big'" in error.message
    answer = stub.CheckJob(pb.CheckJobRequest(spec=too_big))
    assert not answer.accepted
    assert {(r.backend, r.available) for r in answer.refusals} == {("local-small", SMALL_CORES), ("local-big", BIG_CORES)}
    # A job naming a backend too small for it is refused by that backend alone.
    named = refused(stub.IssueJob, pb.IssueJobRequest(spec=spec("true", cores=2, backend="local-small")))
    assert isinstance(named, InsufficientSystemResources) and named.batch_system == "local-small"


def test_an_unknown_backend_or_options_no_backend_takes_are_invalid(deployment: Deployment) -> None:
    stub = deployment.gateway.stub()
    unknown = refused(stub.IssueJob, pb.IssueJobRequest(spec=spec("true", backend="slurm")))
    assert isinstance(unknown, InvalidArgument) and unknown.field == "spec.backend"
    assert "local-small" in unknown.description and "local-big" in unknown.description
    options = refused(stub.IssueJobs, pb.IssueJobsRequest(specs=[spec("true", slurm=pb.SlurmOptions(partition="x"))]))
    assert isinstance(options, InvalidArgument) and options.field == "specs[0].slurm"


def test_listing_status_and_kills_span_both_backends(deployment: Deployment) -> None:
    stub = deployment.gateway.stub()
    sleepers = list(
        stub.IssueJobs(
            pb.IssueJobsRequest(
                specs=[
                    spec("sleep 300", backend="local-small", job_set="wf"),
                    spec("sleep 300", backend="local-big", job_set="wf"),
                ]
            )
        ).job_ids
    )
    assert sorted(stub.ListIssuedJobs(pb.ListIssuedJobsRequest(job_set="wf")).job_ids) == sorted(sleepers)

    def running() -> set[int]:
        return set(stub.ListRunningJobs(pb.ListRunningJobsRequest(job_set="wf")).seconds_running)

    wait_until(lambda: running() == set(sleepers), 30, message="both sleepers running")
    wait_until(
        lambda: stub.GetSchedulingStatus(pb.GetSchedulingStatusRequest()).running_jobs == 2, 30, message="status counts both"
    )
    status = stub.GetSchedulingStatus(pb.GetSchedulingStatusRequest())
    assert "local-small:" in status.message and "local-big:" in status.message

    stub.KillJobs(pb.KillJobsRequest(job_ids=sleepers))

    assert not running() and not stub.ListIssuedJobs(pb.ListIssuedJobsRequest()).job_ids
    for backend in (deployment.small, deployment.big):
        assert not backend.stub().ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running
    assert not updates_within(stub, 1.5)


def test_capabilities_and_health_name_each_backend(deployment: Deployment) -> None:
    capabilities = deployment.gateway.stub().GetCapabilities(pb.GetCapabilitiesRequest())
    assert capabilities.backend == "gateway" and capabilities.max_cores == BIG_CORES
    assert {(b.backend, b.max_cores) for b in capabilities.backends} == {("local-small", SMALL_CORES), ("local-big", BIG_CORES)}
    health = health_pb2_grpc.HealthStub(deployment.gateway.channel())
    for name in ("", "local-small", "local-big"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=name))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, name
