"""The contract every BatchSystem keeps, whatever the scheduler behind it: what Toil's own
batch-system tests assert, plus resumable streams, idempotent issue and clear errors."""

from __future__ import annotations

import math
from pathlib import Path

import grpc
import pytest
from harness import collect_updates, spec, updates_within, wait_until
from targets import Target

from batchgate.errors import InsufficientSystemResources, InvalidArgument, from_rpc_error
from batchgate.v1 import batchgate_pb2 as pb


def issue(target: Target, *specs: pb.JobSpec) -> list[int]:
    return list(target.stub().IssueJobs(pb.IssueJobsRequest(specs=specs)).job_ids)


def rpc_error(call: object, *args: object) -> BaseException:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args)  # type: ignore[operator]
    return from_rpc_error(caught.value)


def test_killed_jobs_leave_at_once_and_never_report(target: Target) -> None:
    stub = target.stub()
    sleepers = issue(target, spec("sleep 300"), spec("sleep 300"))
    assert set(sleepers) <= set(stub.ListIssuedJobs(pb.ListIssuedJobsRequest()).job_ids)
    wait_until(lambda: set(sleepers) <= set(stub.ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running), 60, message="both running")

    stub.KillJobs(pb.KillJobsRequest(job_ids=sleepers))

    assert not set(sleepers) & set(stub.ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running)
    assert not set(sleepers) & set(stub.ListIssuedJobs(pb.ListIssuedJobsRequest()).job_ids)
    (later,) = issue(target, spec("true"))
    updates = collect_updates(stub, 1)
    assert [update.job_id for update in updates] == [later]
    assert not [u for u in updates_within(stub, 2.0) if u.job_id in sleepers]


def test_an_update_arrives_once_with_status_and_wall_time(target: Target) -> None:
    stub = target.stub()
    ok, failed, signalled = issue(target, spec("sleep 0.2"), spec("exit 3"), spec("kill -9 $$"))
    updates = {update.job_id: update for update in collect_updates(stub, 3)}
    assert updates[ok].exit_reason == pb.EXIT_REASON_FINISHED and updates[ok].exit_status == 0
    assert updates[ok].HasField("wall_time_seconds") and updates[ok].wall_time_seconds > 0
    assert (updates[failed].exit_reason, updates[failed].exit_status) == (pb.EXIT_REASON_FAILED, 3)
    # A death by a signal batchgate did not send is a failure, reported as a shell would.
    assert (updates[signalled].exit_reason, updates[signalled].exit_status) == (pb.EXIT_REASON_FAILED, 128 + 9)
    every = updates_within(stub, 1.5)
    assert sorted(update.job_id for update in every) == sorted([ok, failed, signalled])
    assert [update.sequence for update in every] == sorted({update.sequence for update in every})
    assert not stub.ListIssuedJobs(pb.ListIssuedJobsRequest()).job_ids


def test_a_job_over_its_wall_time_is_timelimit(target: Target) -> None:
    if not target.quick_wall_time:
        pytest.skip(f"{target.name} enforces wall time in whole minutes: see its own slow tests")
    (over,) = issue(target, spec("sleep 60", wall_time_seconds=1))
    (update,) = collect_updates(target.stub(), 1)
    assert update.job_id == over
    assert update.exit_reason == pb.EXIT_REASON_TIMELIMIT and update.exit_status != 0
    assert "wall time" in update.message


def test_a_job_that_cannot_start_is_error_saying_why(target: Target, tmp_path: Path) -> None:
    if not target.checks_working_directory:
        pytest.skip(f"{target.name} runs a job whose directory is missing elsewhere: see its own tests")
    missing = tmp_path / "no-such-directory"
    (job,) = issue(target, spec("true", working_directory=str(missing)))
    (update,) = collect_updates(target.stub(), 1)
    assert update.job_id == job
    assert (update.exit_reason, update.exit_status) == (pb.EXIT_REASON_ERROR, 255)
    assert str(missing) in update.message


def test_killing_unknown_or_finished_jobs_is_fine(target: Target) -> None:
    stub = target.stub()
    (done,) = issue(target, spec("true"))
    collect_updates(stub, 1)
    stub.KillJobs(pb.KillJobsRequest(job_ids=[done, 987654321]))
    assert stub.ListIssuedJobs(pb.ListIssuedJobsRequest()).job_ids == []


def test_set_env_reaches_later_jobs_and_job_env_never_leaks(target: Target, tmp_path: Path) -> None:
    stub = target.stub()
    outputs = [tmp_path / f"out{index}" for index in range(3)]
    report = 'printf "%s|%s" "${GREETING-unset}" "${PRIVATE-unset}" > '
    (before,) = issue(target, spec(report + str(outputs[0])))
    stub.SetEnv(pb.SetEnvRequest(name="GREETING", value="hello world"))
    mine, other = issue(
        target,
        spec(report + str(outputs[1]), environment={"PRIVATE": "it's $(not) run; a,b\nc"}),
        spec(report + str(outputs[2])),
    )
    collect_updates(stub, 3)
    assert outputs[0].read_text() == "unset|unset"
    assert outputs[1].read_text() == "hello world|it's $(not) run; a,b\nc"
    assert outputs[2].read_text() == "hello world|unset"


def test_set_env_for_a_job_set_reaches_that_job_set_alone(target: Target, tmp_path: Path) -> None:
    stub = target.stub()
    stub.SetEnv(pb.SetEnvRequest(name="SHARED", value="everyone"))
    stub.SetEnv(pb.SetEnvRequest(name="COLOUR", value="red", job_set="wf-a"))
    stub.SetEnv(pb.SetEnvRequest(name="COLOUR", value="blue", job_set="wf-b"))
    stub.SetEnv(pb.SetEnvRequest(name="SHARED", value="a's own", job_set="wf-a"))
    report = 'printf "%s|%s" "${COLOUR-unset}" "${SHARED-unset}" > '
    outputs = {job_set: tmp_path / f"out-{job_set or 'none'}" for job_set in ("wf-a", "wf-b", "")}
    for job_set, output in outputs.items():
        issue(target, spec(report + str(output), job_set=job_set))
    collect_updates(stub, 3)
    assert outputs["wf-a"].read_text() == "red|a's own"
    assert outputs["wf-b"].read_text() == "blue|everyone"
    assert outputs[""].read_text() == "unset|everyone"

    stub.SetEnv(pb.SetEnvRequest(name="COLOUR", job_set="wf-a"))  # no value: unset, for wf-a alone
    target.restart()  # and it is all kept
    for job_set, output in outputs.items():
        issue(target, spec(report + str(output), job_set=job_set))
    collect_updates(target.stub(), 6)
    assert outputs["wf-a"].read_text() == "unset|a's own"
    assert outputs["wf-b"].read_text() == "blue|everyone"


@pytest.mark.parametrize(
    "field, value, resource",
    [("cores", 10_000.0, "cores"), ("memory", 2**50, "memory"), ("disk", 2**55, "disk")],
)
def test_too_large_a_job_is_refused_at_issue(target: Target, field: str, value: float, resource: str) -> None:
    error = rpc_error(target.stub().IssueJob, pb.IssueJobRequest(spec=spec("true", **{field: value})))
    assert isinstance(error, InsufficientSystemResources)
    assert error.resource == resource
    assert error.requested == value
    assert 0 < error.available < value
    assert error.batch_system


def test_an_unknown_accelerator_kind_is_refused(target: Target) -> None:
    request = pb.IssueJobRequest(spec=spec("true", accelerators=[pb.Accelerator(count=1, kind="tpu")]))
    error = rpc_error(target.stub().IssueJob, request)
    assert isinstance(error, InsufficientSystemResources) and error.resource == "accelerators"
    check = target.stub().CheckJob(pb.CheckJobRequest(spec=request.spec))
    assert not check.accepted and check.refusals[0].resource == "accelerators"


@pytest.mark.parametrize(
    "bad, field",
    [
        (pb.JobSpec(command=""), "command"),
        (pb.JobSpec(command="true", cores=-1), "cores"),
        (pb.JobSpec(command="true", cores=math.nan), "cores"),
        (pb.JobSpec(command="true", memory=-5), "memory"),
        (pb.JobSpec(command="true", wall_time_seconds=0), "wall_time_seconds"),
        (pb.JobSpec(command="true", environment={"A=B": "x"}), "environment['A=B']"),
        (pb.JobSpec(command="true", environment={"A": "x\0y"}), "environment['A']"),
        (pb.JobSpec(command="true", accelerators=[pb.Accelerator(count=0, kind="gpu")]), "accelerators[0].count"),
        (pb.JobSpec(command="true", kubernetes=pb.KubernetesOptions(image="x")), "kubernetes"),
    ],
)
def test_malformed_specs_are_refused_naming_the_field(target: Target, bad: pb.JobSpec, field: str) -> None:
    if target.name in ("k8s", "gateway-k8s") and field == "kubernetes":
        pytest.skip("kubernetes options are this backend's own")
    single = rpc_error(target.stub().IssueJob, pb.IssueJobRequest(spec=bad))
    assert isinstance(single, InvalidArgument) and single.field == f"spec.{field}"
    batch = rpc_error(target.stub().IssueJobs, pb.IssueJobsRequest(specs=[spec("true"), bad]))
    assert isinstance(batch, InvalidArgument) and batch.field == f"specs[1].{field}"
    # All or nothing: the good spec in the refused batch was not issued, and the service serves on.
    assert target.stub().ListIssuedJobs(pb.ListIssuedJobsRequest()).job_ids == []
    assert issue(target, spec("true"))


def test_memory_beyond_int64_on_the_wire_is_refused(target: Target) -> None:
    # 2**64 - 1 in a varint decodes as int64 -1: a client that overflowed gets a clear error.
    raw = pb.JobSpec(command="true").SerializeToString() + b"\x20" + b"\xff" * 9 + b"\x01"
    request = pb.IssueJobRequest(spec=pb.JobSpec.FromString(raw))
    error = rpc_error(target.stub().IssueJob, request)
    assert isinstance(error, InvalidArgument) and error.field == "spec.memory"


def test_a_repeated_request_key_returns_the_first_id(target: Target) -> None:
    stub = target.stub()
    first = stub.IssueJob(pb.IssueJobRequest(spec=spec("true", request_key="k-1"))).job_id
    again = stub.IssueJob(pb.IssueJobRequest(spec=spec("true", request_key="k-1"))).job_id
    assert again == first
    assert len(collect_updates(stub, 1)) == 1
    assert not updates_within(stub, 1.0, after=collect_updates(stub, 1)[0].sequence)
    # A key is its job set's own: another job set (another tenant) choosing it gets a job of its own.
    elsewhere = stub.IssueJob(pb.IssueJobRequest(spec=spec("true", request_key="k-1", job_set="another"))).job_id
    assert elsewhere != first
    assert [update.job_id for update in collect_updates(stub, 1, job_set="another")] == [elsewhere]


def test_job_sets_scope_listing_and_streams(target: Target) -> None:
    stub = target.stub()
    (mine,) = issue(target, spec("sleep 300", job_set="wf-a"))
    (theirs,) = issue(target, spec("true", job_set="wf-b"))
    assert list(stub.ListIssuedJobs(pb.ListIssuedJobsRequest(job_set="wf-a")).job_ids) == [mine]
    updates = collect_updates(stub, 1, job_set="wf-b")
    assert [update.job_id for update in updates] == [theirs] and updates[0].job_set == "wf-b"
    assert not updates_within(stub, 1.0, job_set="wf-a")
    stub.KillJobs(pb.KillJobsRequest(job_ids=[mine]))


def test_ids_are_unique_and_never_reused(target: Target) -> None:
    first = issue(target, *[spec("true") for _ in range(5)])
    collect_updates(target.stub(), 5)
    target.restart()
    second = issue(target, *[spec("true") for _ in range(5)])
    assert len(set(first + second)) == 10 and min(second) > max(first)


@pytest.mark.parametrize("crash", [False, True], ids=["sigterm", "kill-9"])
def test_a_client_resumes_from_its_cursor_across_a_restart(target: Target, crash: bool) -> None:
    stub = target.stub()
    issue(target, *[spec("true") for _ in range(4)])
    seen = collect_updates(stub, 4)
    cursor = seen[1].sequence  # the client had read only two when it lost the connection
    later = issue(target, spec("sleep 1"), spec("sleep 1.5"))

    target.restart(crash=crash)

    resumed = collect_updates(target.stub(), 4, after=cursor)
    assert [update.sequence for update in resumed] == sorted({update.sequence for update in resumed})
    assert [update.job_id for update in resumed[:2]] == [update.job_id for update in seen[2:]]
    assert {update.job_id for update in resumed[2:]} == set(later)
    assert not updates_within(target.stub(), 1.0, after=resumed[-1].sequence)
