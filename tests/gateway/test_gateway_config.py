"""Configuring the gateway: backends from a flag, its environment variable or a file; clear
errors for a bad configuration; a backend that is not up yet when the gateway starts."""

from __future__ import annotations

import socket
from pathlib import Path

import grpc
import pytest
from deployments import start_local
from harness import collect_updates, spec, start_service, wait_until

from batchgate.errors import BackendUnavailable, from_rpc_error
from batchgate.v1 import batchgate_pb2 as pb


def test_backends_from_a_file_are_routed_to_by_the_names_it_gives(tmp_path: Path) -> None:
    backend = start_local(tmp_path, "local-small", 1)
    listing = tmp_path / "backends.conf"
    listing.write_text(f"# name = address\n\nhere = {backend.address}  # this machine\n")
    gateway = start_service("gateway", tmp_path / "gateway", "--backends-file", str(listing))
    try:
        stub = gateway.stub()
        job_id = stub.IssueJob(pb.IssueJobRequest(spec=spec("true", backend="here"))).job_id
        (update,) = collect_updates(stub, 1)
        assert (update.job_id, update.backend) == (job_id, "here")
    finally:
        gateway.kill()
        backend.kill()


def test_backends_from_the_environment(tmp_path: Path) -> None:
    backend = start_local(tmp_path, "local-small", 1)
    gateway = start_service("gateway", tmp_path / "gateway", env={"BATCHGATE_BACKENDS": f"there={backend.address}"})
    try:
        capabilities = gateway.stub().GetCapabilities(pb.GetCapabilitiesRequest())
        assert [b.backend for b in capabilities.backends] == ["there"]
    finally:
        gateway.kill()
        backend.kill()


@pytest.mark.parametrize(
    "args, complaint",
    [
        (["--backends", "small=nohost"], "address 'nohost' is not HOST:PORT"),
        (["--backends", "a=127.0.0.1:1,a=127.0.0.1:2"], "repeated: a"),
        (["--backends", "a=127.0.0.1:1", "--default-backend", "b"], "--default-backend 'b' is not one of the backends (a)"),
        (["--backends-file", "/nonexistent/backends.conf"], "cannot read /nonexistent/backends.conf"),
        ([], "give the backends with --backends or with --backends-file"),
    ],
)
def test_a_bad_configuration_stops_the_gateway_saying_what_is_wrong(tmp_path: Path, args: list[str], complaint: str) -> None:
    with pytest.raises(RuntimeError) as failed:
        start_service("gateway", tmp_path / "gateway", *args)
    assert complaint in str(failed.value)


def free_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def test_a_backend_down_when_the_gateway_starts_is_used_once_it_is_up(tmp_path: Path) -> None:
    address = free_address()
    gateway = start_service("gateway", tmp_path / "gateway", "--backends", f"later={address}")
    backend = None
    try:
        stub = gateway.stub()
        with pytest.raises(grpc.RpcError) as caught:
            stub.IssueJob(pb.IssueJobRequest(spec=spec("true")))
        error = from_rpc_error(caught.value)
        assert isinstance(error, BackendUnavailable) and error.backend == "later"

        backend = start_service("local", tmp_path / "later", "--cores", "1", listen=address)

        wait_until(
            lambda: stub.CheckJob(pb.CheckJobRequest(spec=spec("true"))).accepted, 30, message="the gateway to reach the backend"
        )
        job_id = stub.IssueJob(pb.IssueJobRequest(spec=spec("true"))).job_id
        assert [update.job_id for update in collect_updates(stub, 1)] == [job_id]
    finally:
        gateway.kill()
        if backend is not None:
            backend.kill()
