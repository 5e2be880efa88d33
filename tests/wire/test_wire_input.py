"""Whatever comes over the wire, a service answers cleanly and keeps serving.

Property tests send every backend (local, and each scheduler's service against what its own
tests run it on: a real Slurm, the fake LSF, the emulated Kubernetes API server, moto's AWS Batch,
the tests' Mesos master) and a gateway in front of the local one any request message (any value
in any field, built from the proto's descriptors) and any bytes as any method's request (grpc's
generic calls, no serializer). Every answer must be OK or a clean error: INVALID_ARGUMENT with a
google.rpc.BadRequest naming the field (the request type, for bytes that are no such message),
or RESOURCE_EXHAUSTED with its ErrorInfo; never UNKNOWN or INTERNAL. Afterwards the service
still answers health checks, and jobs issued before are running, untouched.

What is sent is made safe to run (the service runs what it is given): every command is `true`,
output paths and working directories point into the test's folder, and kills spare the
sentinel jobs (a kill of them would be obeyed, rightly). Except on the third target: a gateway
with tokens, where the sentinels are another tenant's and the test's token alone must keep them
from harm (PERMISSION_DENIED is then a clean answer too).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message, message_factory
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from messages import messages

from batchgate.auth import Tenant, new_token, tokens_file_line
from batchgate.client.batch_client import open_channel
from batchgate.v1 import batchgate_pb2 as pb
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc
from harness import RunningService, spec, start_service, wait_until

SERVICE = pb.DESCRIPTOR.services_by_name["BatchSystem"]
METHODS = {method.name: method for method in SERVICE.methods}
# OK, a field named, a limit; and, each with its google.rpc.ErrorInfo: no such job or node
# (GetJobOutput, GetNodeInUse), no output kept (GetJobOutput), a backend that cannot ignore nodes.
CLEAN = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNIMPLEMENTED,
}
SENTINEL_SET = "sentinel"
EXAMPLES = int(os.environ.get("WIRE_EXAMPLES", "100"))  # more for a longer hunt
# The schedulers' services share the kit's validation with the local one, which gets the long
# hunt; each of them gets enough to meet its own driver's checks (options, limits, output).
SCHEDULER_EXAMPLES = max(1, EXAMPLES // 3)

sys.path.insert(0, str(Path(__file__).parent.parent / "contract"))
from targets import TARGETS  # noqa: E402  (how each scheduler's service is started for its tests)

SCHEDULERS = sorted(set(TARGETS) - {"local", "gateway"})


@dataclass
class Target:
    name: str
    service: RunningService
    channel: grpc.Channel  # what the test sends on
    folder: Path
    sentinels: list[int]
    spare_sentinels: bool  # False: the caller's token must keep it from touching them
    clean: frozenset[grpc.StatusCode]


@pytest.fixture(scope="module", params=["local", "gateway", "gateway, another tenant", *SCHEDULERS])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    folder = tmp_path_factory.mktemp("wire")
    tenanted = request.param == "gateway, another tenant"
    owner, stranger = new_token(), new_token()
    extra: list[str] = []
    if tenanted:  # the sentinels are the owner's; the test sends as a tenant of other job sets
        (folder / "tokens").write_text(
            tokens_file_line(Tenant("owner", (SENTINEL_SET,)), owner) + "\n"
            + tokens_file_line(Tenant("stranger", ("stranger-*",)), stranger) + "\n"
        )  # fmt: skip
        extra = ["--tokens-file", str(folder / "tokens")]
    with contextlib.ExitStack() as started:
        if request.param in SCHEDULERS:
            service = started.enter_context(TARGETS[request.param](folder)).service
        else:
            backend = start_service("local", folder / "local", "--cores", "2", "--memory", "4G")
            started.callback(backend.kill)
            service = backend
            if request.param != "local":
                service = start_service("gateway", folder / "gateway", "--backends", f"local={backend.address}", *extra)
                started.callback(service.kill)
        owners = open_channel(service.address, token=owner if tenanted else None)
        started.callback(owners.close)
        stub = pb_grpc.BatchSystemStub(owners)
        sentinels = list(stub.IssueJobs(pb.IssueJobsRequest(specs=[spec("sleep 600", job_set=SENTINEL_SET)] * 2)).job_ids)
        channel = open_channel(service.address, token=stranger) if tenanted else owners
        started.callback(channel.close)
        clean = CLEAN | {grpc.StatusCode.PERMISSION_DENIED} if tenanted else CLEAN
        yield Target(request.param, service, channel, folder, sentinels, spare_sentinels=not tenanted, clean=frozenset(clean))
        # Still serving, and the sentinels untouched: running, and never reported.
        health = health_pb2_grpc.HealthStub(owners).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert sorted(stub.ListIssuedJobs(pb.ListIssuedJobsRequest(job_set=SENTINEL_SET), timeout=10).job_ids) == sorted(sentinels)
        running = pb.ListRunningJobsRequest(job_set=SENTINEL_SET)
        wait_until(
            lambda: sorted(stub.ListRunningJobs(running, timeout=10).seconds_running) == sorted(sentinels),
            timeout=120,
            message="the sentinels running",
        )
        assert "failed inside the service" not in service.log()
        stub.KillJobs(pb.KillJobsRequest(job_ids=sentinels), timeout=60)  # a scheduler's, not ours to leave


def made_safe(request: message.Message, target: Target) -> message.Message:
    """The same request, but for what must not happen on this machine (see the docstring)."""
    safe = type(request)()
    safe.CopyFrom(request)
    specs = []
    if safe.DESCRIPTOR.fields_by_name.get("spec") is not None:
        specs.append(safe.spec)
    if safe.DESCRIPTOR.fields_by_name.get("specs") is not None:
        specs.extend(safe.specs)
    for job in specs:
        job.command = "true"  # an empty one is refused first, and would hide the other fields' checks
        for field in ("working_directory", "stdout_path", "stderr_path"):
            if getattr(job, field):
                setattr(job, field, str(target.folder / "scratch" / field))
        if job.job_set == SENTINEL_SET and target.spare_sentinels:
            job.job_set = "not-the-sentinels"
    if isinstance(safe, pb.KillJobsRequest) and target.spare_sentinels:
        kept = [job_id for job_id in safe.job_ids if job_id not in target.sentinels]
        del safe.job_ids[:]
        safe.job_ids.extend(kept)
    if isinstance(safe, pb.SetEnvRequest) and safe.job_set == SENTINEL_SET and target.spare_sentinels:
        safe.job_set = "not-the-sentinels"
    return safe


def call(target: Target, method_name: str, payload: bytes) -> grpc.RpcError | None:
    """Send `payload` as the method's request bytes; the error it got, None if OK."""
    path = f"/{SERVICE.full_name}/{method_name}"
    try:
        if METHODS[method_name].server_streaming:
            stream = target.channel.unary_stream(path)(payload, timeout=1.0)
            try:
                next(iter(stream), None)
            finally:
                stream.cancel()
        else:
            target.channel.unary_unary(path)(payload, timeout=30)
    except grpc.RpcError as error:
        if METHODS[method_name].server_streaming and error.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
            return None  # an admitted stream with nothing to send yet
        return error
    return None


def assert_clean(target: Target, error: grpc.RpcError | None, method_name: str, payload: bytes) -> None:
    if error is None:
        return
    code = error.code()
    assert code in target.clean, f"{method_name}({payload!r}) answered {code.name}: {error.details()}"
    status = rpc_status.from_call(error)
    assert status is not None, f"{method_name}: {code.name} without a google.rpc.Status"
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        (packed,) = status.details
        bad_request = error_details_pb2.BadRequest()
        assert packed.Unpack(bad_request), f"{method_name}: INVALID_ARGUMENT without a BadRequest"
        assert bad_request.field_violations[0].field, f"{method_name}: {error.details()} names no field"
    else:
        assert any(packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR) for packed in status.details), error.details()


def request_class(method_name: str) -> Any:
    return message_factory.GetMessageClass(METHODS[method_name].input_type)


any_request = st.sampled_from(sorted(METHODS)).flatmap(
    lambda name: st.tuples(st.just(name), messages(METHODS[name].input_type))
)


def hunt(target: Target) -> settings:
    """How long to look: the local backend and the gateways get the long hunt; the schedulers'
    services share the kit's validation with them, and get enough to meet their own drivers'."""
    count = SCHEDULER_EXAMPLES if target.name in SCHEDULERS else EXAMPLES
    return settings(max_examples=count, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_any_request_message_gets_a_clean_answer(target: Target) -> None:
    @hunt(target)
    @given(sent=any_request)
    def answers_cleanly(sent: tuple[str, message.Message]) -> None:
        method_name, request = sent
        payload = made_safe(request, target).SerializeToString()
        assert_clean(target, call(target, method_name, payload), method_name, payload)

    answers_cleanly()


def test_any_bytes_get_a_clean_answer(target: Target) -> None:
    @hunt(target)
    @given(method_name=st.sampled_from(sorted(METHODS)), payload=st.binary(max_size=200))
    def answers_cleanly(method_name: str, payload: bytes) -> None:
        kind = request_class(method_name)
        try:
            decoded = kind.FromString(payload)
        except message.DecodeError:
            error = call(target, method_name, payload)
            assert error is not None and error.code() is grpc.StatusCode.INVALID_ARGUMENT, f"{method_name}({payload!r})"
            assert error.details().startswith(f"{kind.DESCRIPTOR.name}: "), error.details()
            assert_clean(target, error, method_name, payload)
            return
        safe = made_safe(decoded, target)
        if safe != decoded:  # else the very bytes go, unknown fields and all
            payload = safe.SerializeToString()
        assert_clean(target, call(target, method_name, payload), method_name, payload)

    answers_cleanly()


@pytest.mark.parametrize("target", ["gateway, another tenant"], indirect=True)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(job_ids=st.lists(st.integers(-3, 40), max_size=6))
def test_another_tenant_s_kills_never_reach_the_sentinels(target: Target, job_ids: list[int]) -> None:
    payload = pb.KillJobsRequest(job_ids=job_ids).SerializeToString()
    error = call(target, "KillJobs", payload)
    if set(job_ids) & set(target.sentinels):
        assert error is not None and error.code() is grpc.StatusCode.PERMISSION_DENIED, job_ids
    else:
        assert_clean(target, error, "KillJobs", payload)
