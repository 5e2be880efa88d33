"""The Python client against real gRPC servers started in the test (tests/scripted_service.py)."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from harness import RunningService, spec, start_service

from batchgate.client import BatchgateClient, job_spec
from batchgate.errors import (
    AcquisitionTimeoutException,
    BackendUnavailable,
    BatchgateError,
    DeadlockException,
    InsufficientSystemResources,
    InvalidArgument,
    ServiceError,
)
from batchgate.v1 import batchgate_pb2 as pb
from batchgate.v1 import batchgate_pb2_grpc as rpc
from scripted_service import ScriptedServicer, UpdateLog, start_server

WAIT = 20.0  # seconds; only a bound on a broken client, never a measurement


@pytest.fixture
def service() -> Iterator[tuple[ScriptedServicer, str]]:
    servicer = ScriptedServicer()
    servicer.answers["GetSchedulingStatus"] = pb.GetSchedulingStatusResponse(message="idle")
    server, address = start_server(servicer)
    yield servicer, address
    server.stop(None)


@pytest.fixture
def client(service: tuple[ScriptedServicer, str]) -> Iterator[BatchgateClient]:
    with BatchgateClient(service[1], job_set="wf-1") as connected:
        yield connected


def read_updates(client: BatchgateClient, count: int) -> list[int]:
    sequences = []
    for _ in range(count):
        update = client.get_updated_job(max_wait=WAIT)
        assert update is not None, f"no update after {sequences}"
        sequences.append(update.sequence)
    return sequences


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- job specs -------------------------------------------------------------------------------


def test_job_spec_reads_sizes_durations_and_accelerators() -> None:
    spec = job_spec(
        "echo hi",
        cores=0.5,
        memory="2G",
        disk=4096,
        wall_time="1:30:00",
        accelerators=["2:gpu:nvidia-tesla-k80", pb.Accelerator(count=1, kind="tpu")],
        environment={"A": "1"},
        slurm={"partition": "short"},
    )
    assert (spec.cores, spec.memory, spec.disk, spec.wall_time_seconds) == (0.5, 2 * 1024**3, 4096, 5400.0)
    assert [(a.count, a.kind, a.model) for a in spec.accelerators] == [(2, "gpu", "nvidia-tesla-k80"), (1, "tpu", "")]
    assert dict(spec.environment) == {"A": "1"}
    assert spec.WhichOneof("backend_options") == "slurm" and spec.slurm.partition == "short"


def test_job_spec_leaves_unset_resources_to_the_service_defaults() -> None:
    spec = job_spec("true")
    assert not any(spec.HasField(field) for field in ("cores", "memory", "disk", "wall_time_seconds"))


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"memory": "2Q"}, "memory"),
        ({"disk": "lots"}, "disk"),
        ({"wall_time": "soon"}, "wall_time"),
        ({"accelerators": ["0"]}, "accelerators[0]"),
        ({"accelerators": ["1", "gpu"]}, "accelerators[1]"),
        ({"slurm": {}, "lsf": {}}, "backend_options"),
        ({"partition": "short"}, "partition"),
    ],
)
def test_job_spec_names_the_field_it_cannot_read(arguments: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        job_spec("true", **arguments)  # type: ignore[arg-type]
    assert raised.value.field == field


# --- unary calls -----------------------------------------------------------------------------


def test_specs_without_a_job_set_get_the_clients(service: tuple[ScriptedServicer, str], client: BatchgateClient) -> None:
    servicer, _ = service
    servicer.answers["IssueJobs"] = pb.IssueJobsResponse(job_ids=[7, 8])
    mine, theirs = job_spec("a"), job_spec("b", job_set="other")
    assert client.issue_many([mine, theirs]) == [7, 8]
    (request,) = servicer.requests["IssueJobs"]
    assert [spec.job_set for spec in request.specs] == ["wf-1", "other"]
    assert mine.job_set == "", "the caller's spec must not be changed"


def test_listing_is_scoped_to_the_job_set(service: tuple[ScriptedServicer, str], client: BatchgateClient) -> None:
    servicer, _ = service
    servicer.answers["ListIssuedJobs"] = pb.ListIssuedJobsResponse(job_ids=[3, 5])
    servicer.answers["ListRunningJobs"] = pb.ListRunningJobsResponse(seconds_running={5: 2.5})
    assert client.issued_job_ids() == [3, 5]
    assert client.running_job_ids() == {5: 2.5}
    assert servicer.requests["ListIssuedJobs"][0].job_set == "wf-1"
    assert servicer.requests["ListRunningJobs"][0].job_set == "wf-1"


def test_set_env_without_a_value_unsets_rather_than_sets_empty(
    service: tuple[ScriptedServicer, str], client: BatchgateClient
) -> None:
    servicer, _ = service
    servicer.answers["SetEnv"] = pb.SetEnvResponse()
    client.set_env("EMPTY", "")
    client.set_env("GONE")
    empty, gone = servicer.requests["SetEnv"]
    assert empty.HasField("value") and empty.value == ""
    assert not gone.HasField("value")


def test_nodes_filter_by_preemptible_only_when_asked(service: tuple[ScriptedServicer, str], client: BatchgateClient) -> None:
    servicer, _ = service
    servicer.answers["GetNodes"] = pb.GetNodesResponse(nodes=[pb.Node(name="n1")])
    assert [node.name for node in client.nodes()] == ["n1"]
    client.nodes(preemptible=False)
    every, on_demand = servicer.requests["GetNodes"]
    assert not every.HasField("preemptible")
    assert on_demand.HasField("preemptible") and not on_demand.preemptible


def test_kill_sends_the_ids(service: tuple[ScriptedServicer, str], client: BatchgateClient) -> None:
    servicer, _ = service
    servicer.answers["KillJobs"] = pb.KillJobsResponse()
    client.kill(iter([4, 9]))
    assert list(servicer.requests["KillJobs"][0].job_ids) == [4, 9]


@pytest.mark.parametrize(
    ("error", "fields"),
    [
        (
            InsufficientSystemResources("memory", 2.0**40, 2.0**30, "local"),
            {"resource": "memory", "requested": 2.0**40, "available": 2.0**30, "batch_system": "local"},
        ),
        (InvalidArgument("spec.cores", "must be positive"), {"field": "spec.cores", "description": "must be positive"}),
        (BackendUnavailable("slurm"), {"backend": "slurm"}),
        (AcquisitionTimeoutException("job store", 5.0), {"resource": "job store", "waited_seconds": 5.0}),
        (DeadlockException("nothing can start", "local"), {"backend": "local", "message": "nothing can start"}),
    ],
)
def test_service_errors_are_raised_as_their_exceptions(
    service: tuple[ScriptedServicer, str], client: BatchgateClient, error: BatchgateError, fields: dict[str, object]
) -> None:
    servicer, _ = service
    servicer.answers["IssueJob"] = error
    with pytest.raises(type(error)) as raised:
        client.issue(job_spec("true"))
    assert {name: getattr(raised.value, name) for name in fields} == fields


def test_an_unexpected_status_keeps_its_code(service: tuple[ScriptedServicer, str], client: BatchgateClient) -> None:
    with pytest.raises(ServiceError) as raised:
        client.capabilities()  # nothing scripted: the server answers UNIMPLEMENTED
    assert raised.value.status_code == grpc.StatusCode.UNIMPLEMENTED


# --- connecting --------------------------------------------------------------------------------


def test_the_address_comes_from_the_environment(service: tuple[ScriptedServicer, str], monkeypatch: pytest.MonkeyPatch) -> None:
    servicer, address = service
    monkeypatch.setenv("BATCHGATE_ADDRESS", address)
    with BatchgateClient() as client:
        assert client.scheduling_status() == "idle"


def test_the_first_call_waits_for_a_service_that_is_still_starting() -> None:
    servicer = ScriptedServicer()
    servicer.answers["GetCapabilities"] = pb.GetCapabilitiesResponse(backend="late")
    port = free_port()
    servers: list[grpc.Server] = []
    starter = threading.Timer(0.5, lambda: servers.append(start_server(servicer, port)[0]))
    with BatchgateClient(f"127.0.0.1:{port}", timeout=WAIT) as client:
        starter.start()
        try:
            assert client.capabilities().backend == "late"
        finally:
            starter.join()
            servers[0].stop(None)


def test_calls_ride_through_a_restart_of_the_service(tmp_path: Path) -> None:
    service = start_service("local", tmp_path / "local", "--cores", "2")
    restarted: list[RunningService] = []
    with BatchgateClient(service.address, timeout=WAIT) as client:
        first = client.issue(spec("true"))
        service.stop()
        later = threading.Timer(1.0, lambda: restarted.append(service.restart()))
        later.start()
        try:
            second = client.issue(spec("true"))  # made while nothing listens: waits, then lands
        finally:
            later.join()
            restarted[0].kill()
    assert second > first


def test_every_issued_spec_carries_a_request_key(service: tuple[ScriptedServicer, str], client: BatchgateClient) -> None:
    # So a call that gRPC repeats after a lost answer cannot issue the job twice.
    servicer, _ = service
    servicer.answers["IssueJobs"] = pb.IssueJobsResponse(job_ids=[7, 8])
    client.issue_many([job_spec("a"), job_spec("b", request_key="mine")])
    (request,) = servicer.requests["IssueJobs"]
    keys = [spec.request_key for spec in request.specs]
    assert keys[0] and keys[1] == "mine"


def test_no_service_at_the_address_is_reported_with_the_address() -> None:
    address = f"127.0.0.1:{free_port()}"
    with BatchgateClient(address, timeout=0.5) as client, pytest.raises(ServiceError) as raised:
        client.issued_job_ids()
    assert address in raised.value.message


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, and a server and a client certificate it signed, made with the openssl command."""
    folder = tmp_path_factory.mktemp("tls")

    def openssl(*arguments: str) -> None:
        subprocess.run(["openssl", *arguments], cwd=folder, check=True, capture_output=True)

    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *new_key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test-ca")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl("req", *new_key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "1", "-extfile", "san.ext")  # fmt: skip
    return folder


def test_mutual_tls(certificates: Path) -> None:
    servicer = ScriptedServicer()
    servicer.answers["GetCapabilities"] = pb.GetCapabilitiesResponse(backend="secure")
    credentials = grpc.ssl_server_credentials(
        [((certificates / "server.key").read_bytes(), (certificates / "server.pem").read_bytes())],
        root_certificates=(certificates / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    server, address = start_server(servicer, credentials=credentials)
    try:
        paths = {name: str(certificates / file) for name, file in [("tls_ca", "ca.pem"), ("tls_cert", "client.pem"), ("tls_key", "client.key")]}
        with BatchgateClient(address, timeout=WAIT, **paths) as client:
            assert client.capabilities().backend == "secure"
        with BatchgateClient(address, timeout=1, tls_ca=paths["tls_ca"]) as anonymous, pytest.raises(ServiceError):
            anonymous.capabilities()
    finally:
        server.stop(None)


def test_a_client_certificate_needs_its_key(certificates: Path) -> None:
    with pytest.raises(InvalidArgument) as raised:
        BatchgateClient("127.0.0.1:1", tls_cert=str(certificates / "client.pem"))
    assert raised.value.field == "tls_key"


# --- the update stream -------------------------------------------------------------------------


def test_each_update_is_returned_once_then_none(service: tuple[ScriptedServicer, str], client: BatchgateClient) -> None:
    servicer, _ = service
    for job_id in (11, 12, 13):
        servicer.log.append(job_id)
    assert read_updates(client, 3) == [1, 2, 3]
    assert client.get_updated_job(max_wait=0.3) is None
    assert client.cursor == 3
    assert servicer.requests["GetUpdatedJob"][0].job_set == "wf-1"


def test_the_stream_resumes_from_the_cursor_across_a_service_restart() -> None:
    log = UpdateLog()
    before = ScriptedServicer(log)
    server, address = start_server(before)
    port = int(address.rsplit(":", 1)[1])
    for job_id in range(3):
        log.append(job_id)
    with BatchgateClient(address) as client:
        assert read_updates(client, 3) == [1, 2, 3]
        server.stop(None)
        for job_id in range(3, 6):
            log.append(job_id)  # finished while the service was down
        assert client.get_updated_job(max_wait=0.3) is None  # no error while it is away
        after = ScriptedServicer(log)
        server, _ = start_server(after, port)
        try:
            for job_id in range(6, 9):
                log.append(job_id)
            assert read_updates(client, 6) == [4, 5, 6, 7, 8, 9]
            assert after.requests["GetUpdatedJob"][0].after_sequence == 3
        finally:
            server.stop(None)


def test_updates_a_service_sends_again_are_dropped() -> None:
    # A service that replays its whole log and breaks the stream after every response.
    servicer = ScriptedServicer(ignore_cursor=True, break_after_response=True)
    server, address = start_server(servicer)
    try:
        with BatchgateClient(address) as client:
            for job_id in range(4):
                servicer.log.append(job_id)
                assert read_updates(client, 1) == [job_id + 1]
            assert client.get_updated_job(max_wait=0.5) is None
        assert len(servicer.requests["GetUpdatedJob"]) > 1, "the stream was never reopened"
    finally:
        server.stop(None)


def test_a_new_client_carries_on_from_an_earlier_cursor(service: tuple[ScriptedServicer, str]) -> None:
    servicer, address = service
    for job_id in range(4):
        servicer.log.append(job_id)
    with BatchgateClient(address) as first:
        read_updates(first, 2)
        cursor = first.cursor
    with BatchgateClient(address, after_sequence=cursor) as second:
        assert read_updates(second, 2) == [3, 4]


def test_updates_can_start_again_from_an_earlier_sequence(service: tuple[ScriptedServicer, str], client: BatchgateClient) -> None:
    servicer, _ = service
    for job_id in range(3):
        servicer.log.append(job_id)
    assert [update.sequence for update in client.updates(timeout=0.5)] == [1, 2, 3]
    assert [update.sequence for update in client.updates(after_sequence=1, timeout=0.5)] == [2, 3]
    assert client.cursor == 3


def test_a_stream_the_service_refuses_raises_instead_of_waiting() -> None:
    server, address = start_server(rpc.BatchSystemServicer())  # answers every call UNIMPLEMENTED
    try:
        with BatchgateClient(address) as client:
            for _ in range(2):
                with pytest.raises(ServiceError) as raised:
                    client.get_updated_job(max_wait=WAIT)
                assert raised.value.status_code == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop(None)


# --- against a real local service --------------------------------------------------------------


def test_the_stream_carries_on_across_a_restart_of_a_real_service(local_service: RunningService) -> None:
    with BatchgateClient(local_service.address, job_set="restart") as client:
        quick = client.issue_many([spec("true"), spec("true")])
        # Still running at the stop: the local backend stops them and runs them anew after it.
        slow = client.issue_many([spec("sleep 2"), spec("sleep 2")])
        before = [client.get_updated_job(max_wait=WAIT) for _ in quick]
        assert sorted(update.job_id for update in before if update) == sorted(quick)
        local_service.stop()
        restarted = local_service.restart()
        try:
            after = [client.get_updated_job(max_wait=WAIT) for _ in slow]
            assert sorted(update.job_id for update in after if update) == sorted(slow)
            assert client.get_updated_job(max_wait=0.5) is None
        finally:
            restarted.kill()
    sequences = [update.sequence for update in before + after if update]
    assert sequences == sorted(set(sequences)), "updates repeated or out of order"


def test_a_wait_on_a_deadlocked_real_service_raises(local_service: RunningService) -> None:
    with BatchgateClient(local_service.address) as client:
        client.issue(spec("sleep 600", memory=1536 * 1024**2))
        local_service.stop()
        # Back with less memory than the queued job needs: it can never start.
        smaller = start_service("local", local_service.state_dir, "--cores", "2", "--memory", "1G", "--disk", "10G",
                                listen=local_service.address, log_suffix="-smaller")  # fmt: skip
        try:
            with pytest.raises(DeadlockException, match="larger than this machine's budget"):
                client.get_updated_job(max_wait=0.5)
        finally:
            smaller.kill()
