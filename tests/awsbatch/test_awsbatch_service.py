"""`batchgate serve awsbatch` in front of moto's AWS Batch: jobs run as real containers on the
local Docker engine, and everything is asked through the service's gRPC API as a client would."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from awsbatch_proxy import AnswerLosingProxy
from harness import RunningService, collect_updates, spec, start_service, updates_within, wait_until
from moto_batch import CREDENTIALS, IMAGE, INSTANCE_TYPE, MAX_VCPUS, QUEUE, TEST_ARGS, MotoBatch, free_port, job_transitions, terminate_tagged

from batchgate.errors import InvalidArgument, from_rpc_error
from batchgate.store import Store
from batchgate.v1 import batchgate_pb2 as pb

GIB = 1024**3


def issue(service: RunningService, *specs: pb.JobSpec) -> list[int]:
    return list(service.stub().IssueJobs(pb.IssueJobsRequest(specs=specs)).job_ids)


def aws_jobs(moto: MotoBatch, instance_id: str) -> list[dict[str, object]]:
    """Every job in moto's queue that carries `instance_id`'s tag, with its details."""
    batch = moto.client()
    ids = [s["jobId"] for s in batch.list_jobs(jobQueue=QUEUE, filters=[{"name": "AFTER_CREATED_AT", "values": ["0"]}])["jobSummaryList"]]
    found = []
    for start in range(0, len(ids), 100):
        found += [job for job in batch.describe_jobs(jobs=ids[start : start + 100])["jobs"] if job["tags"].get("batchgate:instance") == instance_id]
    return found


def instance_of(service: RunningService) -> str:
    store = Store(service.state_dir / "awsbatch.sqlite")
    try:
        return store.instance_id()
    finally:
        store.close()


def test_exit_codes_and_signals_come_from_the_container(awsbatch: RunningService, moto: MotoBatch) -> None:
    stub = awsbatch.stub()
    failed, signalled, fine = issue(awsbatch, spec("exit 7"), spec("sh -c 'kill -TERM $$'"), spec("echo hi"))
    updates = {update.job_id: update for update in collect_updates(stub, 3)}
    assert (updates[failed].exit_reason, updates[failed].exit_status) == (pb.EXIT_REASON_FAILED, 7)
    assert (updates[signalled].exit_reason, updates[signalled].exit_status) == (pb.EXIT_REASON_FAILED, 128 + 15)
    assert (updates[fine].exit_reason, updates[fine].exit_status) == (pb.EXIT_REASON_FINISHED, 0)
    assert all(update.wall_time_seconds > 0 for update in updates.values())
    # Each update names the AWS job, which carries the job's id in its tags.
    by_backing_id = {job["jobId"]: job for job in aws_jobs(moto, instance_of(awsbatch))}
    for job_id, update in updates.items():
        assert by_backing_id[update.backing_id]["tags"]["batchgate:job"] == str(job_id)
        assert update.backing_id in update.message


def test_the_environment_arrives_intact(awsbatch: RunningService, tmp_path: Path) -> None:
    hostile = {
        "QUOTES": "it's \"quoted\" `and` \\back\\slashed",
        "DOLLARS": "$HOME $(id) ${X:-y} $$",
        "LINES": "one\ntwo\r\nthree\n",
        "WIDE": "żółw ☃ \u200b",
        "EMPTY": "",
        "SPACES": "  lead and trail  ",
        "GLOB": "* ? [a-z] ~",
    }
    output = tmp_path / "env.json"
    stub = awsbatch.stub()
    stub.SetEnv(pb.SetEnvRequest(name="FROM_SETENV", value="set; rm -rf / #"))
    report = "printf '%s\\0' " + " ".join(f'"${name}"' for name in ["FROM_SETENV", *hostile]) + f" > {output}"
    (job,) = issue(awsbatch, spec(report, environment=hostile))
    (update,) = collect_updates(stub, 1)
    assert update.job_id == job and update.exit_reason == pb.EXIT_REASON_FINISHED, update.message
    values = output.read_bytes().decode().split("\0")[:-1]
    assert values == ["set; rm -rf / #", *hostile.values()]


def test_names_aws_reserves_or_sh_drops_are_refused(awsbatch: RunningService) -> None:
    for name in ("AWS_BATCH_JOB_ID", "not-a-shell-name"):
        with pytest.raises(grpc.RpcError) as caught:
            awsbatch.stub().IssueJob(pb.IssueJobRequest(spec=spec("true", environment={name: "x"})))
        error = from_rpc_error(caught.value)
        assert isinstance(error, InvalidArgument) and error.field == f"spec.environment['{name}']"


def test_working_directory_and_output_files(awsbatch: RunningService, tmp_path: Path) -> None:
    out, err = tmp_path / "out", tmp_path / "err"
    good, missing = issue(
        awsbatch,
        spec("pwd; echo oops >&2", working_directory=str(tmp_path), stdout_path=str(out), stderr_path=str(err)),
        spec("true", working_directory=str(tmp_path / "no-such-directory")),
    )
    updates = {update.job_id: update for update in collect_updates(awsbatch.stub(), 2)}
    assert updates[good].exit_reason == pb.EXIT_REASON_FINISHED
    assert out.read_text() == f"{tmp_path}\n" and err.read_text() == "oops\n"
    # The directory is the container's: its absence fails the command, as cd fails.
    assert updates[missing].exit_reason == pb.EXIT_REASON_FAILED and updates[missing].exit_status not in (0, 255)


def test_a_killed_running_job_is_terminated_and_never_reported(awsbatch: RunningService, moto: MotoBatch) -> None:
    stub = awsbatch.stub()
    (sleeper,) = issue(awsbatch, spec("sleep 300"))
    wait_until(lambda: sleeper in stub.ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running, 30, message="running")

    stub.KillJobs(pb.KillJobsRequest(job_ids=[sleeper]))

    # KillJobs returned once AWS had ended it, through TerminateJob.
    (job,) = aws_jobs(moto, instance_of(awsbatch))
    assert job["status"] == "FAILED" and job["statusReason"] == "terminated through batchgate KillJobs"
    assert not updates_within(stub, 2.0)


def test_capacity_comes_from_the_queues_compute_environments(awsbatch: RunningService) -> None:
    stub = awsbatch.stub()
    capabilities = stub.GetCapabilities(pb.GetCapabilitiesRequest())
    # m5.large, as EC2 describes it: 2 vCPUs, 8 GiB
    assert (capabilities.max_cores, capabilities.max_memory) == (2, 8 * GIB)
    assert "disk:not-enforced" in capabilities.features and "options:aws_batch" in capabilities.features
    (node_type,) = stub.GetNodeTypes(pb.GetNodeTypesRequest()).node_types
    assert (node_type.cores, node_type.memory, node_type.count) == (2, 8 * GIB, MAX_VCPUS // 2)
    (node,) = stub.GetNodes(pb.GetNodesRequest()).nodes
    assert node.name == "batchgate-test-env" and node.cores == MAX_VCPUS
    assert INSTANCE_TYPE == "m5.large"


def test_a_missing_queue_or_definition_in_a_jobs_options_is_refused_and_the_service_serves_on(awsbatch: RunningService) -> None:
    stub = awsbatch.stub()
    for options, field, name in (
        (pb.AwsBatchOptions(job_queue="no-such-queue"), "spec.aws_batch.job_queue", "no-such-queue"),
        (pb.AwsBatchOptions(job_definition="no-such-definition"), "spec.aws_batch.job_definition", "no-such-definition"),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            stub.IssueJob(pb.IssueJobRequest(spec=spec("true", aws_batch=options)))
        error = from_rpc_error(caught.value)
        assert isinstance(error, InvalidArgument) and error.field == field and name in error.message
    (job,) = issue(awsbatch, spec("true", aws_batch=pb.AwsBatchOptions(job_queue=QUEUE)))
    (update,) = collect_updates(stub, 1)
    assert update.job_id == job and update.exit_reason == pb.EXIT_REASON_FINISHED


@pytest.mark.parametrize("flag, value", [("--awsbatch-job-queue", "no-such-queue"), ("--awsbatch-job-definition", "no-such-definition")])
def test_a_service_configured_with_a_missing_queue_or_definition_says_so_at_start(
    moto: MotoBatch, tmp_path: Path, flag: str, value: str
) -> None:
    args = moto.service_args(*TEST_ARGS)
    args[args.index(flag) + 1] = value
    with pytest.raises(RuntimeError) as caught:
        start_service("awsbatch", tmp_path / "bad", *args, env=CREDENTIALS)
    assert f"'{value}'" in str(caught.value)


def test_jobs_wait_while_the_endpoint_is_unreachable_and_run_once_it_answers(moto: MotoBatch, tmp_path: Path) -> None:
    port = free_port()
    args = [
        "--awsbatch-endpoint-url", f"http://127.0.0.1:{port}", "--awsbatch-region", "us-east-1",
        "--awsbatch-job-queue", QUEUE, "--awsbatch-job-definition", "batchgate-test-definition",
        "--awsbatch-poll-interval", "0.3", "--awsbatch-max-attempts", "2", *TEST_ARGS,
    ]  # fmt: skip
    service = start_service("awsbatch", tmp_path / "awsbatch", *args, env=CREDENTIALS)
    endpoint = None
    try:
        stub = service.stub()
        (job,) = issue(service, spec("echo made it"))
        wait_until(
            lambda: "cannot be reached" in stub.GetSchedulingStatus(pb.GetSchedulingStatusRequest()).message, 30, message="an unreachable status"
        )
        assert list(stub.ListIssuedJobs(pb.ListIssuedJobsRequest()).job_ids) == [job]
        health = health_pb2_grpc.HealthStub(service.channel())
        serving = health_pb2.HealthCheckResponse.SERVING
        wait_until(lambda: health.Check(health_pb2.HealthCheckRequest(service="aws-batch")).status != serving, 30, message="not serving")
        assert health.Check(health_pb2.HealthCheckRequest()).status == serving  # the service itself serves on

        endpoint = AnswerLosingProxy(moto.endpoint, port)  # the endpoint answers from now on

        (update,) = collect_updates(stub, 1, timeout=60)
        assert update.job_id == job and update.exit_reason == pb.EXIT_REASON_FINISHED
        assert len(aws_jobs(moto, instance_of(service))) == 1
        wait_until(lambda: health.Check(health_pb2.HealthCheckRequest(service="aws-batch")).status == serving, 30, message="serving again")
    finally:
        service.kill()
        if endpoint is not None:
            endpoint.close()


def test_after_kill_9_every_job_is_taken_back_and_reported_once(awsbatch: RunningService, moto: MotoBatch) -> None:
    stub = awsbatch.stub()
    job_ids = issue(awsbatch, *[spec(f"sleep 2; exit {index}", request_key=f"key-{index}") for index in range(5)])
    wait_until(lambda: len(aws_jobs(moto, instance_of(awsbatch))) == 5, 30, message="all five in AWS")

    awsbatch.kill()
    restarted = awsbatch.restart()
    try:
        updates = collect_updates(restarted.stub(), 5, timeout=60)
        assert sorted(update.job_id for update in updates) == sorted(job_ids)
        assert {update.job_id: update.exit_status for update in updates} == {job_id: index for index, job_id in enumerate(job_ids)}
        assert not updates_within(restarted.stub(), 1.5, after=updates[-1].sequence)
        # Nothing was submitted twice.
        tagged = aws_jobs(moto, instance_of(restarted))
        assert sorted(int(job["tags"]["batchgate:job"]) for job in tagged) == sorted(job_ids)
        # The request keys travel too, so a repeated issue still finds the first job.
        assert stub is not None
        again = restarted.stub().IssueJob(pb.IssueJobRequest(spec=spec("true", request_key="key-3"))).job_id
        assert again == job_ids[3]
    finally:
        restarted.kill()


def test_a_job_killed_while_queued_is_cancelled_and_never_reported(awsbatch: RunningService, moto: MotoBatch) -> None:
    # moto moves a job one state on every 2 s (SUBMITTED, PENDING, RUNNABLE, STARTING, RUNNING).
    with job_transitions(moto, {"progression": "time", "seconds": 2}):
        stub = awsbatch.stub()
        (queued,) = issue(awsbatch, spec("sleep 300"))
        wait_until(
            lambda: "waiting: 1 PENDING" in stub.GetSchedulingStatus(pb.GetSchedulingStatusRequest()).message, 30, message="pending in AWS"
        )
        stub.KillJobs(pb.KillJobsRequest(job_ids=[queued]))
    (job,) = aws_jobs(moto, instance_of(awsbatch))
    assert job["status"] == "FAILED" and job["statusReason"] == "cancelled through batchgate KillJobs"
    assert not updates_within(stub, 2.0)
    assert not stub.ListIssuedJobs(pb.ListIssuedJobsRequest()).job_ids


def test_missing_credentials_are_named_at_start(moto: MotoBatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    no_credentials = {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true"}
    with pytest.raises(RuntimeError) as caught:
        start_service("awsbatch", tmp_path / "bad", *moto.service_args(*TEST_ARGS), env=no_credentials)
    assert "no usable AWS credentials" in str(caught.value)


def test_given_an_image_the_service_registers_its_own_job_definition(moto: MotoBatch, tmp_path: Path) -> None:
    args = moto.service_args(*TEST_ARGS)
    at = args.index("--awsbatch-job-definition")
    args[at : at + 2] = ["--awsbatch-image", IMAGE, "--awsbatch-host-paths", "/tmp", "--awsbatch-owner-tag", "team-a"]
    service = start_service("awsbatch", tmp_path / "awsbatch", *args, env=CREDENTIALS)
    try:
        output = tmp_path / "out"
        (job,) = issue(service, spec(f"echo ran > {output}"))
        (update,) = collect_updates(service.stub(), 1)
        assert update.job_id == job and update.exit_reason == pb.EXIT_REASON_FINISHED
        assert output.read_text() == "ran\n"  # /tmp is mounted as the flag says
        instance = instance_of(service)
        (aws_job,) = aws_jobs(moto, instance)
        assert aws_job["tags"]["Owner"] == "team-a"
        (definition,) = moto.client().describe_job_definitions(jobDefinitions=[aws_job["jobDefinition"]])["jobDefinitions"]
        assert definition["jobDefinitionName"] == f"batchgate-{instance}"
        assert definition["containerProperties"]["image"] == IMAGE
        assert definition["retryStrategy"] == {"attempts": 1}
    finally:
        service.kill()


def test_jobs_are_reported_lost_when_aws_stays_unreachable(moto: MotoBatch, tmp_path: Path) -> None:
    endpoint = AnswerLosingProxy(moto.endpoint)
    args = moto.service_args(*TEST_ARGS, "--awsbatch-give-up-after", "2", "--awsbatch-max-attempts", "1")
    args[args.index("--awsbatch-endpoint-url") + 1] = endpoint.endpoint
    service = start_service("awsbatch", tmp_path / "awsbatch", *args, env=CREDENTIALS)
    try:
        stub = service.stub()
        (job,) = issue(service, spec("sleep 60"))
        wait_until(lambda: job in stub.ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running, 30, message="running")
        endpoint.close()  # AWS goes away, and stays away

        (update,) = collect_updates(stub, 1, timeout=60)
        assert update.job_id == job and (update.exit_reason, update.exit_status) == (pb.EXIT_REASON_LOST, 255)
        assert "lost sight of AWS Batch job" in update.message and update.backing_id in update.message
    finally:
        service.kill()
        terminate_tagged(moto, instance_of(service))
