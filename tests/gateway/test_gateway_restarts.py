"""Crashes: kill -9 of the gateway or of a backend loses no update and repeats none, and a
request key means one job, whatever restarts in between."""

from __future__ import annotations

import collections
import shlex
from pathlib import Path

import grpc
import pytest
from deployments import Deployment, ResumingReader
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import collect_updates, spec, updates_within, wait_until

from batchgate.errors import BackendUnavailable, from_rpc_error
from batchgate.v1 import batchgate_pb2 as pb


def issue(deployment: Deployment, *specs: pb.JobSpec) -> list[int]:
    return list(deployment.gateway.stub().IssueJobs(pb.IssueJobsRequest(specs=specs)).job_ids)


def assert_once_each(updates: list[pb.UpdatedJob], job_ids: list[int]) -> None:
    assert sorted(update.job_id for update in updates) == sorted(job_ids)
    assert [update.sequence for update in updates] == sorted({update.sequence for update in updates})


def test_a_client_streaming_across_a_gateway_crash_gets_every_update_once(deployment: Deployment) -> None:
    backends = ("local-small", "local-big")
    jobs = issue(deployment, *[spec(f"sleep {0.3 * (i % 6)}", backend=backends[i % 2]) for i in range(12)])
    reader = ResumingReader(deployment.gateway.address)
    try:
        reader.wait_for(2)  # some have ended, others still run

        deployment.restart_gateway(crash=True)

        updates = reader.wait_for(len(jobs))
        assert reader.breaks >= 1
        assert_once_each(updates, jobs)
        assert not updates_within(deployment.gateway.stub(), 1.0, after=updates[-1].sequence)
    finally:
        reader.stop()


def test_jobs_issued_just_before_a_gateway_crash_each_run_once(deployment: Deployment, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    # Crashing right after the answer hits any point of forwarding: before, during, after IssueJobs.
    jobs = issue(deployment, *[spec(f"echo {i} >> {shlex.quote(str(ran))}") for i in range(40)])

    deployment.restart_gateway(crash=True)

    assert_once_each(collect_updates(deployment.gateway.stub(), len(jobs)), jobs)
    assert sorted(ran.read_text().split()) == sorted(str(i) for i in range(40))


def test_a_backend_crash_fails_its_calls_fast_while_the_other_works_and_loses_nothing(deployment: Deployment) -> None:
    stub = deployment.gateway.stub()
    before = issue(
        deployment,
        spec("sleep 1", backend="local-small"),
        spec("sleep 2", backend="local-big"),
        spec("true", backend="local-small"),
    )

    deployment.small.kill()

    def small_is_refused() -> bool:
        return not stub.CheckJob(pb.CheckJobRequest(spec=spec("true", backend="local-small"))).accepted

    wait_until(small_is_refused, 30, message="the gateway to see local-small gone")
    with pytest.raises(grpc.RpcError) as caught:
        stub.IssueJob(pb.IssueJobRequest(spec=spec("true", backend="local-small")))
    error = from_rpc_error(caught.value)
    assert isinstance(error, BackendUnavailable) and error.backend == "local-small"
    # The other backend keeps working, and takes what local-small would have.
    during = issue(deployment, spec("true", backend="local-big", job_set="during"), spec("true", job_set="during"))
    served = collect_updates(stub, 2, job_set="during")
    assert sorted(update.job_id for update in served) == sorted(during)
    assert {update.backend for update in served} == {"local-big"}

    deployment.small = deployment.small.restart()

    wait_until(lambda: not small_is_refused(), 30, message="the gateway to reach local-small again")
    after = issue(deployment, spec("true", backend="local-small"))
    updates = collect_updates(stub, len(before + during + after))
    assert_once_each(updates, before + during + after)
    assert not updates_within(stub, 1.5, after=updates[-1].sequence)
    assert collections.Counter(update.backend for update in updates) == {"local-small": 3, "local-big": 3}


def test_a_repeated_request_key_starts_nothing_new_even_after_a_gateway_crash(deployment: Deployment, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    step = spec(f"echo ran >> {shlex.quote(str(ran))}", request_key="workflow-1/step-1")
    first = deployment.gateway.stub().IssueJob(pb.IssueJobRequest(spec=step)).job_id
    (update,) = collect_updates(deployment.gateway.stub(), 1)

    deployment.restart_gateway(crash=True)

    assert deployment.gateway.stub().IssueJob(pb.IssueJobRequest(spec=step)).job_id == first
    assert not updates_within(deployment.gateway.stub(), 1.5, after=update.sequence)
    assert ran.read_text() == "ran\n"


@pytest.mark.parametrize("crash", [False, True], ids=["running", "after-kill-9"])
def test_an_update_the_gateway_cannot_place_yet_waits_for_its_job(deployment: Deployment, crash: bool) -> None:
    """A gateway crash between a backend taking a job and the gateway recording that leaves the
    backend running a job the gateway will submit again (same request key, so the same job).
    Its update must wait for that, not be dropped, and a crash meanwhile must not skip it."""
    stub = deployment.gateway.stub()
    (first,) = issue(deployment, spec("true", backend="local-big"))
    (delivered,) = collect_updates(stub, 1)
    (seen_by_backend,) = collect_updates(deployment.big.stub(), 1)
    job_set = seen_by_backend.job_set  # the gateway's own, "gateway-INSTANCE"
    request_key = f"{job_set.removeprefix('gateway-')}:{first + 1}"  # what the next gateway job is sent as
    # The state such a crash leaves: the backend already ran the next gateway job.
    deployment.big.stub().IssueJob(pb.IssueJobRequest(spec=spec("true", job_set=job_set, request_key=request_key)))
    (early,) = collect_updates(deployment.big.stub(), 1, after=seen_by_backend.sequence)
    assert not updates_within(stub, 1.0, after=delivered.sequence)  # the gateway has read it and holds it
    if crash:
        deployment.restart_gateway(crash=True)
        stub = deployment.gateway.stub()

    (second,) = issue(deployment, spec("true", backend="local-big"))

    assert second == first + 1
    (update,) = collect_updates(stub, 1, after=delivered.sequence)
    assert update.job_id == second and update.backing_id == early.backing_id
    assert not updates_within(deployment.big.stub(), 1.0, after=early.sequence)  # it ran once


@pytest.mark.parametrize("gateway_crashes", [False, True], ids=["gateway-up", "gateway-crashes-meanwhile"])
def test_a_kill_that_cannot_reach_its_backend_is_made_when_the_backend_is_back(deployment: Deployment, gateway_crashes: bool) -> None:
    stub = deployment.gateway.stub()
    (sleeper,) = issue(deployment, spec("sleep 300", backend="local-small"))
    wait_until(
        lambda: sleeper in stub.ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running, 30, message="the sleeper to run"
    )
    deployment.small.kill()  # the sleeper lives on, and the restarted backend adopts it
    health = health_pb2_grpc.HealthStub(deployment.gateway.channel())
    down = health_pb2.HealthCheckResponse.NOT_SERVING
    wait_until(
        lambda: health.Check(health_pb2.HealthCheckRequest(service="local-small")).status == down,
        30,
        message="local-small unhealthy",
    )

    with pytest.raises(grpc.RpcError) as caught:
        stub.KillJobs(pb.KillJobsRequest(job_ids=[sleeper]))

    error = from_rpc_error(caught.value)
    assert isinstance(error, BackendUnavailable) and error.backend == "local-small"
    assert sleeper not in stub.ListIssuedJobs(pb.ListIssuedJobsRequest()).job_ids
    if gateway_crashes:  # the kill still waiting must survive it
        deployment.restart_gateway(crash=True)
        stub = deployment.gateway.stub()
        health = health_pb2_grpc.HealthStub(deployment.gateway.channel())
    deployment.small = deployment.small.restart()
    backend = deployment.small.stub()
    wait_until(
        lambda: not backend.ListIssuedJobs(pb.ListIssuedJobsRequest()).job_ids, 30, message="the kill to reach local-small"
    )
    up = health_pb2.HealthCheckResponse.SERVING
    wait_until(
        lambda: health.Check(health_pb2.HealthCheckRequest(service="local-small")).status == up, 30, message="local-small healthy"
    )
    (later,) = issue(deployment, spec("true", backend="local-small"))
    assert [update.job_id for update in collect_updates(stub, 1)] == [later]
