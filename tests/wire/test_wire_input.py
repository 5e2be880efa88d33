"""Whatever comes over the wire, a service answers cleanly and keeps serving.

Property tests send a local backend and a gateway in front of it any request message (any value
in any field, built from the proto's descriptors) and any bytes as any method's request (grpc's
generic calls, no serializer). Every answer must be OK or a clean error: INVALID_ARGUMENT with a
google.rpc.BadRequest naming the field (the request type, for bytes that are no such message),
or RESOURCE_EXHAUSTED with its ErrorInfo; never UNKNOWN or INTERNAL. Afterwards the service
still answers health checks, and jobs issued before are running, untouched.

What is sent is made safe to run (the service runs what it is given): every command is `true`,
output paths and working directories point into the test's folder, and kills spare the
sentinel jobs (a kill of them would be obeyed, rightly).
"""

from __future__ import annotations

import os
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

from batchgate.v1 import batchgate_pb2 as pb
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc
from harness import RunningService, spec, start_service

SERVICE = pb.DESCRIPTOR.services_by_name["BatchSystem"]
METHODS = {method.name: method for method in SERVICE.methods}
CLEAN = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
SENTINEL_SET = "sentinel"
EXAMPLES = int(os.environ.get("WIRE_EXAMPLES", "150"))  # more for a longer hunt


@dataclass
class Target:
    service: RunningService
    channel: grpc.Channel
    folder: Path
    sentinels: list[int]


@pytest.fixture(scope="module", params=["local", "gateway"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    folder = tmp_path_factory.mktemp(f"wire-{request.param}")
    services = [start_service("local", folder / "local", "--cores", "2", "--memory", "4G", "--max-message-size", "1M")]
    if request.param == "gateway":
        services.append(start_service("gateway", folder / "gateway", "--backends", f"local={services[0].address}", "--max-message-size", "1M"))
    service = services[-1]
    channel = grpc.insecure_channel(service.address)
    stub = pb_grpc.BatchSystemStub(channel)
    sentinels = list(stub.IssueJobs(pb.IssueJobsRequest(specs=[spec("sleep 600", job_set=SENTINEL_SET)] * 2)).job_ids)
    yield Target(service, channel, folder, sentinels)
    # Still serving, and the sentinels untouched: running, and never reported.
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert sorted(stub.ListIssuedJobs(pb.ListIssuedJobsRequest(job_set=SENTINEL_SET), timeout=10).job_ids) == sorted(sentinels)
    assert "failed inside the service" not in service.log()
    channel.close()
    for running in reversed(services):
        running.kill()


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
        if job.job_set == SENTINEL_SET:
            job.job_set = "not-the-sentinels"
    if isinstance(safe, pb.KillJobsRequest):
        kept = [job_id for job_id in safe.job_ids if job_id not in target.sentinels]
        del safe.job_ids[:]
        safe.job_ids.extend(kept)
    if isinstance(safe, pb.SetEnvRequest) and safe.job_set == SENTINEL_SET:
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


def assert_clean(error: grpc.RpcError | None, method_name: str, payload: bytes) -> None:
    if error is None:
        return
    code = error.code()
    assert code in CLEAN, f"{method_name}({payload!r}) answered {code.name}: {error.details()}"
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


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(sent=any_request)
def test_any_request_message_gets_a_clean_answer(target: Target, sent: tuple[str, message.Message]) -> None:
    method_name, request = sent
    payload = made_safe(request, target).SerializeToString()
    assert_clean(call(target, method_name, payload), method_name, payload)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(method_name=st.sampled_from(sorted(METHODS)), payload=st.binary(max_size=200))
def test_any_bytes_get_a_clean_answer(target: Target, method_name: str, payload: bytes) -> None:
    kind = request_class(method_name)
    try:
        decoded = kind.FromString(payload)
    except message.DecodeError:
        error = call(target, method_name, payload)
        assert error is not None and error.code() is grpc.StatusCode.INVALID_ARGUMENT, f"{method_name}({payload!r})"
        assert error.details().startswith(f"{kind.DESCRIPTOR.name}: "), error.details()
        assert_clean(error, method_name, payload)
        return
    safe = made_safe(decoded, target)
    if safe != decoded:  # else the very bytes go, unknown fields and all
        payload = safe.SerializeToString()
    assert_clean(call(target, method_name, payload), method_name, payload)

