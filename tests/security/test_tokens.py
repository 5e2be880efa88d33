"""Bearer tokens on a real service: no valid token, no answer; a tenant reaches its own job sets
alone and learns nothing of the others'; kills and SetEnv are audited; the file is re-read on
SIGHUP; and a service will not serve off loopback unprotected."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from credentials import Tokens, write_tokens
from harness import RunningService, collect_updates, spec, start_service, wait_until

from batchgate.auth import Tenant, hash_token
from batchgate.client import BatchgateClient
from batchgate.client.batch_client import open_channel
from batchgate.errors import PermissionDenied, RateLimited, Unauthenticated
from batchgate.v1 import batchgate_pb2 as pb
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc

SECRET_VALUE = "s3cret-value-never-logged"


@pytest.fixture
def service(tmp_path: Path, tokens: Tokens) -> Iterator[RunningService]:
    # At DEBUG, so that "never logged" covers every log line the service has.
    running = start_service("local", tmp_path / "local", "--cores", "2", "--tokens-file", str(tokens.path), "--log-level", "DEBUG")
    yield running
    running.kill()


def stub_for(service: RunningService, token: str | None) -> pb_grpc.BatchSystemStub:
    channel = open_channel(service.address, token=token)
    service._channels.append(channel)
    return pb_grpc.BatchSystemStub(channel)


def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()  # type: ignore[operator]
    return raised.value.code()


def test_a_call_without_a_valid_token_is_unauthenticated(service: RunningService, tokens: Tokens) -> None:
    listing = pb.ListIssuedJobsRequest(job_set="alice-1")
    assert code_of(lambda: stub_for(service, None).ListIssuedJobs(listing)) is grpc.StatusCode.UNAUTHENTICATED
    assert code_of(lambda: stub_for(service, "bg_not-a-token").ListIssuedJobs(listing)) is grpc.StatusCode.UNAUTHENTICATED
    issue = pb.IssueJobRequest(spec=spec("true", job_set="alice-1"))
    assert code_of(lambda: stub_for(service, None).IssueJob(issue)) is grpc.StatusCode.UNAUTHENTICATED
    stream = stub_for(service, None).GetUpdatedJob(pb.GetUpdatedJobRequest(job_set="alice-1"))
    assert code_of(lambda: next(iter(stream))) is grpc.StatusCode.UNAUTHENTICATED
    # The right token in another scheme is no bearer token either.
    channel = grpc.insecure_channel(service.address)
    service._channels.append(channel)
    # Nor does a caller without one learn whether its bytes would decode.
    garbage = channel.unary_unary("/batchgate.v1.BatchSystem/KillJobs")
    assert code_of(lambda: garbage(b"\xff\xff\xff")) is grpc.StatusCode.UNAUTHENTICATED
    basic = [("authorization", f"Basic {tokens['alice']}")]
    assert code_of(lambda: pb_grpc.BatchSystemStub(channel).ListIssuedJobs(listing, metadata=basic)) is grpc.StatusCode.UNAUTHENTICATED
    # The client says what to do about it.
    with BatchgateClient(service.address, job_set="alice-1", timeout=10) as client, pytest.raises(Unauthenticated) as raised:
        client.issued_job_ids()
    assert "bearer token" in raised.value.message
    # Health stays open to probes.
    assert stub_for(service, tokens["alice"]).GetCapabilities(pb.GetCapabilitiesRequest()).backend == "local"


def test_a_tenant_reaches_its_own_job_sets_and_learns_nothing_of_others(service: RunningService, tokens: Tokens) -> None:
    alice = stub_for(service, tokens["alice"])
    bob = stub_for(service, tokens["bob"])
    (job_id,) = alice.IssueJobs(pb.IssueJobsRequest(specs=[spec("sleep 60", job_set="alice-wf")])).job_ids
    (bobs_job,) = bob.IssueJobs(pb.IssueJobsRequest(specs=[spec("sleep 60", job_set="bob-wf")])).job_ids
    assert list(alice.ListIssuedJobs(pb.ListIssuedJobsRequest(job_set="alice-wf")).job_ids) == [job_id]

    denied: dict[str, grpc.RpcError] = {}
    calls = {
        "list": lambda: bob.ListIssuedJobs(pb.ListIssuedJobsRequest(job_set="alice-wf")),
        "list all": lambda: bob.ListIssuedJobs(pb.ListIssuedJobsRequest()),
        "running": lambda: bob.ListRunningJobs(pb.ListRunningJobsRequest(job_set="alice-wf")),
        "status": lambda: bob.GetSchedulingStatus(pb.GetSchedulingStatusRequest(job_set="alice-wf")),
        "watch": lambda: next(iter(bob.GetUpdatedJob(pb.GetUpdatedJobRequest(job_set="alice-wf")))),
        "watch all": lambda: next(iter(bob.GetUpdatedJob(pb.GetUpdatedJobRequest()))),
        "kill": lambda: bob.KillJobs(pb.KillJobsRequest(job_ids=[bobs_job, job_id])),
        "check": lambda: bob.CheckJob(pb.CheckJobRequest(spec=spec("true", job_set="alice-wf"))),
        "issue": lambda: bob.IssueJobs(pb.IssueJobsRequest(specs=[spec("true", job_set="bob-wf"), spec("true", job_set="alice-x")])),
        "setenv": lambda: bob.SetEnv(pb.SetEnvRequest(name="A", value="1", job_set="alice-wf")),
        "setenv all": lambda: bob.SetEnv(pb.SetEnvRequest(name="A", value="1")),
    }
    for name, call in calls.items():
        with pytest.raises(grpc.RpcError) as raised:
            call()
        assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED, (name, raised.value.details())
        denied[name] = raised.value
    # Each refusal names the field, and says nothing of alice's jobs or grants.
    assert denied["kill"].details().startswith("job_ids[1]: ")
    assert denied["issue"].details().startswith("specs[1].job_set: ")
    for name, error in denied.items():
        assert "sleep" not in error.details() and "alice-*" not in error.details(), error.details()
        if name not in ("kill", "issue"):
            assert error.details().split(": ")[0] in ("job_set", "spec.job_set") and str(job_id) not in error.details(), error.details()
    # Nothing happened: alice's job runs on, bob's kill killed neither job (all or none), and
    # bob's half-refused IssueJobs issued nothing.
    assert set(alice.ListIssuedJobs(pb.ListIssuedJobsRequest(job_set="alice-wf")).job_ids) == {job_id}
    assert list(bob.ListIssuedJobs(pb.ListIssuedJobsRequest(job_set="bob-wf")).job_ids) == [bobs_job]
    # Unknown ids are still no error, and bob may kill his own.
    bob.KillJobs(pb.KillJobsRequest(job_ids=[bobs_job, 999_999]))
    # A see-all tenant reads every job set, but may kill only in its own.
    ops = stub_for(service, tokens["ops"])
    assert set(ops.ListIssuedJobs(pb.ListIssuedJobsRequest()).job_ids) == {job_id}
    assert code_of(lambda: ops.KillJobs(pb.KillJobsRequest(job_ids=[job_id]))) is grpc.StatusCode.PERMISSION_DENIED
    alice.KillJobs(pb.KillJobsRequest(job_ids=[job_id]))
    assert not ops.ListIssuedJobs(pb.ListIssuedJobsRequest()).job_ids
    # The Python client raises the matching exception.
    with BatchgateClient(service.address, job_set="alice-wf", token=tokens["bob"], timeout=10) as client:
        with pytest.raises(PermissionDenied) as refused:
            client.issued_job_ids()
    assert refused.value.field == "job_set"


def test_kills_and_set_env_are_audited_with_the_tenant_and_no_secret(service: RunningService, tokens: Tokens) -> None:
    alice = stub_for(service, tokens["alice"])
    with_secret = spec("sleep 60", job_set="alice-wf", environment={"DB_PASSWORD": SECRET_VALUE + "-in-a-job"})
    (job_id,) = alice.IssueJobs(pb.IssueJobsRequest(specs=[with_secret])).job_ids
    alice.SetEnv(pb.SetEnvRequest(name="API_KEY", value=SECRET_VALUE, job_set="alice-wf"))
    alice.KillJobs(pb.KillJobsRequest(job_ids=[job_id]))
    bob = stub_for(service, tokens["bob"])
    code_of(lambda: bob.KillJobs(pb.KillJobsRequest(job_ids=[job_id])))
    ops = stub_for(service, tokens["ops"])
    ops.SetEnv(pb.SetEnvRequest(name="API_KEY"))  # unset, for every job set
    code_of(lambda: stub_for(service, None).KillJobs(pb.KillJobsRequest(job_ids=[job_id])))

    def audit_lines() -> list[str]:
        return [line for line in service.log().splitlines() if "batchgate.audit" in line]

    wait_until(lambda: len(audit_lines()) >= 5, timeout=10, message="five audit lines")
    lines = audit_lines()
    assert any(f"SetEnv tenant=alice " in line and "set name='API_KEY' job_set='alice-wf' outcome=OK" in line for line in lines), lines
    assert any(f"KillJobs tenant=alice " in line and f"job_ids={job_id} outcome=OK" in line for line in lines), lines
    assert any(f"KillJobs tenant=bob " in line and "refused PERMISSION_DENIED" in line for line in lines), lines
    assert any("SetEnv tenant=ops " in line and "unset name='API_KEY' job_set=''" in line for line in lines), lines
    assert any("KillJobs tenant=(unauthenticated) " in line and "refused UNAUTHENTICATED" in line for line in lines), lines
    everything = service.log()
    assert SECRET_VALUE not in everything
    assert not any(token in everything for token in tokens.by_tenant.values())
    assert not any(hash_token(token) in everything for token in tokens.by_tenant.values())


def test_the_tokens_file_is_read_again_on_sighup(service: RunningService, tokens: Tokens) -> None:
    carol = Tenant("carol", ("carol-*",))
    renewed = write_tokens(tokens.path, (Tenant("alice", ("alice-*",)), carol))  # alice's token replaced, carol added
    listing = pb.ListIssuedJobsRequest(job_set="carol-1")
    assert code_of(lambda: stub_for(service, renewed["carol"]).ListIssuedJobs(listing)) is grpc.StatusCode.UNAUTHENTICATED
    os.kill(service.process.pid, signal.SIGHUP)
    wait_until(lambda: "tokens file reloaded" in service.log(), timeout=10, message="the reload")
    stub_for(service, renewed["carol"]).ListIssuedJobs(listing)
    old_alice = pb.ListIssuedJobsRequest(job_set="alice-1")
    assert code_of(lambda: stub_for(service, tokens["alice"]).ListIssuedJobs(old_alice)) is grpc.StatusCode.UNAUTHENTICATED
    assert code_of(lambda: stub_for(service, tokens["bob"]).ListIssuedJobs(listing)) is grpc.StatusCode.UNAUTHENTICATED
    # A broken file is not taken: the tokens stay as they were, and the log says why.
    tokens.path.write_text("carol sha256:not-hex job-sets=carol-*\n")
    os.kill(service.process.pid, signal.SIGHUP)
    wait_until(lambda: "not reloaded" in service.log(), timeout=10, message="the refused reload")
    stub_for(service, renewed["carol"]).ListIssuedJobs(listing)
    assert "line 1" in service.log()


def test_the_token_command_makes_a_line_the_service_takes(tmp_path: Path) -> None:
    batchgate = str(Path(sys.executable).parent / "batchgate")
    tokens_file = tmp_path / "tokens"
    made = subprocess.run(
        [batchgate, "token", "dana", "--job-sets", "dana-*,shared", "--append", str(tokens_file)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    token = made.stdout.strip()
    assert token.startswith("bg_") and token not in tokens_file.read_text()
    assert oct(tokens_file.stat().st_mode & 0o777) == "0o600"
    printed = subprocess.run([batchgate, "token", "erin", "--see-all"], capture_output=True, text=True, check=True).stdout
    assert printed.splitlines()[1].startswith("tokens file line: erin sha256:") and printed.splitlines()[1].endswith(" see-all")

    running = start_service("local", tmp_path / "local", "--cores", "1", "--tokens-file", str(tokens_file))
    try:
        environment = {**os.environ, "BATCHGATE_TOKEN": token}
        cli = [batchgate, "--address", running.address]
        submitted = subprocess.run([*cli, "submit", "--job-set", "shared", "--", "true"], capture_output=True, text=True, env=environment)
        assert submitted.returncode == 0, submitted.stderr
        refused = subprocess.run([*cli, "ls", "--job-set", "other"], capture_output=True, text=True, env=environment)
        assert refused.returncode == 1 and "may not use job set 'other'" in refused.stderr
        without = subprocess.run([*cli, "--token", "bg_wrong", "ls", "--job-set", "shared"], capture_output=True, text=True)
        assert without.returncode == 1 and "not valid" in without.stderr
        watched = subprocess.run([*cli, "--token", token, "watch", "--job-set", "shared", "--count", "1"], capture_output=True, text=True, timeout=60)
        assert watched.returncode == 0 and "FINISHED" in watched.stdout, watched.stderr
    finally:
        running.kill()


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0"])
def test_serving_off_loopback_unprotected_is_refused_unless_asked_for(tmp_path: Path, listen: str) -> None:
    with pytest.raises(RuntimeError) as refused:
        start_service("local", tmp_path / "refused", listen=listen)
    assert "refusing to serve" in str(refused.value) and "--insecure-public" in str(refused.value)
    running = start_service("local", tmp_path / "public", "--insecure-public", listen=listen)
    running.kill()


def test_a_gateway_with_tokens_sends_its_own_to_the_backends(tmp_path: Path, tokens: Tokens) -> None:
    backend_tokens = write_tokens(tmp_path / "backend-tokens", (Tenant("gateway", ("gateway-*",)),))
    backend = start_service("local", tmp_path / "local", "--cores", "2", "--tokens-file", str(backend_tokens.path))
    gateway = start_service(
        "gateway", tmp_path / "gateway", "--backends", f"local={backend.address}", "--tokens-file", str(tokens.path),
        env={"BATCHGATE_BACKEND_TOKEN": backend_tokens["gateway"]},
    )  # fmt: skip
    try:
        alice = stub_for(gateway, tokens["alice"])
        (job_id,) = alice.IssueJobs(pb.IssueJobsRequest(specs=[spec("exit 3", job_set="alice-wf")])).job_ids
        (update,) = collect_updates(alice, 1, job_set="alice-wf")
        assert (update.job_id, update.exit_status) == (job_id, 3)
        # The backend knows the gateway's tenant, not alice: her token opens nothing there.
        direct = pb.ListIssuedJobsRequest(job_set="alice-wf")
        assert code_of(lambda: stub_for(backend, tokens["alice"]).ListIssuedJobs(direct)) is grpc.StatusCode.UNAUTHENTICATED
        assert code_of(lambda: stub_for(gateway, tokens["bob"]).ListIssuedJobs(direct)) is grpc.StatusCode.PERMISSION_DENIED
        # A gateway with the wrong token reaches nothing, and says why.
        stranger = start_service(
            "gateway", tmp_path / "stranger", "--backends", f"local={backend.address}", env={"BATCHGATE_BACKEND_TOKEN": tokens["alice"]}
        )
        wait_until(lambda: "refuses the gateway" in stranger.log(), timeout=15, message="the refusal in the log")
        stranger.kill()
    finally:
        gateway.kill()
        backend.kill()


def test_a_tenant_over_its_request_rate_is_told_when_to_retry_and_others_are_not_slowed(tmp_path: Path, tokens: Tokens) -> None:
    running = start_service("local", tmp_path / "rated", "--tokens-file", str(tokens.path), "--rate-limit", "1", "--rate-burst", "3")
    try:
        with BatchgateClient(running.address, job_set="alice-1", token=tokens["alice"], timeout=10) as alice:
            with pytest.raises(RateLimited) as limited:
                for _ in range(10):  # a burst of 3, then one a second: 10 calls this fast go over
                    alice.issued_job_ids()
        assert limited.value.limit == "--rate-limit" and 0 < limited.value.retry_after <= 1.0
        assert "retry in" in limited.value.message
        # Another tenant has its own allowance.
        with BatchgateClient(running.address, job_set="bob-wf", token=tokens["bob"], timeout=10) as bob:
            assert bob.issued_job_ids() == []
    finally:
        running.kill()
