"""TLS and mutual TLS on every path, with certificates the test makes: a user reaches a gateway
over mutual TLS with a token, from Python, the CLI, the Toil plugin, grpcurl and Node; the
gateway reaches a backend that accepts its client certificate alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from credentials import Pki, Tokens, write_tokens
from example_tools import installed_tool
from harness import RunningService, start_service, wait_until

from batchgate.auth import Tenant
from batchgate.client import BatchgateClient, job_spec
from batchgate.client.batch_client import open_channel
from batchgate.errors import ServiceError, Unauthenticated
from batchgate.v1 import batchgate_pb2 as pb
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass
class Secured:
    backend: RunningService
    gateway: RunningService
    tokens: Tokens  # the gateway's: alice and bob
    pki: Pki


@pytest.fixture(scope="module")
def secured(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """A backend that takes the gateway's client certificate and token alone, behind a gateway
    that takes users' certificates and tokens."""
    folder = tmp_path_factory.mktemp("secured")
    backend_tokens = write_tokens(folder / "backend-tokens", (Tenant("gateway", ("gateway-*",)),))
    backend = start_service(
        "local", folder / "local", "--cores", "2", *pki.server_flags(client_ca="gateway-ca.pem"),
        "--tokens-file", str(backend_tokens.path),
    )  # fmt: skip
    tokens = write_tokens(folder / "tokens", (Tenant("alice", ("alice-*",)), Tenant("bob", ("bob-*",))))
    gateway = start_service(
        "gateway", folder / "gateway", "--backends", f"local={backend.address}",
        *pki.server_flags(client_ca="user-ca.pem"), "--tokens-file", str(tokens.path),
        "--backend-tls-ca", pki.path("service-ca.pem"), "--backend-tls-cert", pki.path("gateway.pem"),
        "--backend-tls-key", pki.path("gateway.key"),
        env={"BATCHGATE_BACKEND_TOKEN": backend_tokens["gateway"]},
    )  # fmt: skip
    yield Secured(backend, gateway, tokens, pki)
    gateway.kill()
    backend.kill()


def test_a_job_runs_through_the_gateway_over_mutual_tls(secured: Secured) -> None:
    with BatchgateClient(
        secured.gateway.address, job_set="alice-tls", token=secured.tokens["alice"], timeout=30, **secured.pki.client_paths()
    ) as client:
        job_id = client.issue(job_spec("exit 4", cores=0.1, memory="64M"))
        update = client.get_updated_job(max_wait=30)
    assert update is not None and (update.job_id, update.exit_status) == (job_id, 4)


def test_a_service_refuses_whoever_lacks_the_certificate_it_wants(secured: Secured) -> None:
    pki = secured.pki
    attempts = {
        "plaintext": {},
        "TLS, no client certificate": {"tls_ca": pki.path("service-ca.pem")},
        "the user's certificate at the backend": pki.client_paths("user"),
    }
    for what, paths in attempts.items():
        address = secured.backend.address
        with BatchgateClient(address, timeout=3, token="bg_anything", **paths) as client, pytest.raises(ServiceError) as raised:
            client.capabilities()
        assert raised.value.status_code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), what
    # The gateway's own certificate reaches the backend; without the gateway's token nothing more.
    with BatchgateClient(secured.backend.address, timeout=10, **pki.client_paths("gateway")) as client:
        with pytest.raises(Unauthenticated):
            client.issued_job_ids()
    # A user's certificate with a good token reaches the gateway; without a token it does not.
    with BatchgateClient(secured.gateway.address, job_set="alice-x", timeout=10, **pki.client_paths()) as client:
        with pytest.raises(Unauthenticated):
            client.issued_job_ids()


def test_the_cli_speaks_mutual_tls_with_a_token(secured: Secured) -> None:
    pki = secured.pki
    cli = [
        str(Path(sys.executable).parent / "batchgate"), "--address", secured.gateway.address, "--timeout", "30",
        "--tls-ca", pki.path("service-ca.pem"), "--tls-client-cert", pki.path("user.pem"), "--tls-client-key", pki.path("user.key"),
    ]  # fmt: skip
    environment = {**os.environ, "BATCHGATE_TOKEN": secured.tokens["bob"]}
    submitted = subprocess.run([*cli, "submit", "--job-set", "bob-cli", "--", "exit 5"], capture_output=True, text=True, env=environment)
    assert submitted.returncode == 0, submitted.stderr
    watched = subprocess.run(
        [*cli, "watch", "--job-set", "bob-cli", "--count", "1"], capture_output=True, text=True, env=environment, timeout=60
    )
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout.split()[1:4] == [submitted.stdout.strip(), "FAILED", "5"], watched.stdout


def test_the_toil_plugin_speaks_mutual_tls_with_a_token(secured: Secured, monkeypatch: pytest.MonkeyPatch) -> None:
    from toil.batchSystems.abstractBatchSystem import BatchJobExitReason
    from toil.common import Config
    from toil.job import JobDescription

    from toil_batch_system_batchgate.batch_system import BatchgateBatchSystem

    monkeypatch.setenv("TOIL_BATCHGATE_TOKEN", "bg_not-this-one")  # the option wins over the variable
    config = Config()
    config.workflowID = str(uuid.uuid4())
    config.batchgate_job_set_prefix = "alice-"  # alice's token grants alice-*
    config.batchgate_address = secured.gateway.address
    config.batchgate_token = secured.tokens["alice"]
    paths = secured.pki.client_paths()
    config.batchgate_tls_ca, config.batchgate_tls_cert, config.batchgate_tls_key = paths["tls_ca"], paths["tls_cert"], paths["tls_key"]
    config.batchgate_wall_time_round_up = 0
    batch = BatchgateBatchSystem(config, maxCores=8, maxMemory=8 * 1024**3, maxDisk=8 * 1024**3)
    try:
        requirements = {"cores": 0.1, "memory": 64 * 1024**2, "disk": 1024**2, "accelerators": [], "preemptible": False, "walltime": 0}
        job_id = batch.issueBatchJob("exit 0", JobDescription(requirements=requirements, jobName="tls", unitName=None))
        update = batch.getUpdatedBatchJob(maxWait=30)
        assert update is not None and (update.jobID, update.exitStatus, update.exitReason) == (job_id, 0, BatchJobExitReason.FINISHED)
    finally:
        batch.shutdown()


def test_grpcurl_speaks_mutual_tls_with_a_token(secured: Secured) -> None:
    pki = secured.pki
    grpcurl = [
        installed_tool("grpcurl"), "-cacert", pki.path("service-ca.pem"), "-cert", pki.path("user.pem"), "-key", pki.path("user.key"),
    ]  # fmt: skip
    bearer = ["-H", f"authorization: Bearer {secured.tokens['alice']}"]
    listed = subprocess.run([*grpcurl, secured.gateway.address, "list"], capture_output=True, text=True, timeout=30)
    assert "batchgate.v1.BatchSystem" in listed.stdout.split(), listed.stderr
    issue = '{"spec": {"command": "true", "cores": 0.1, "job_set": "alice-grpcurl"}}'
    issued = subprocess.run(
        [*grpcurl, *bearer, "-d", issue, secured.gateway.address, "batchgate.v1.BatchSystem/IssueJob"], capture_output=True, text=True, timeout=30
    )
    assert issued.returncode == 0 and '"job_id"' in issued.stdout, issued.stdout + issued.stderr
    anonymous = subprocess.run(
        [*grpcurl, "-d", issue, secured.gateway.address, "batchgate.v1.BatchSystem/IssueJob"], capture_output=True, text=True, timeout=30
    )
    assert anonymous.returncode != 0 and "Code: Unauthenticated" in anonymous.stdout + anonymous.stderr
    plaintext = subprocess.run(
        [grpcurl[0], "-plaintext", *bearer, "-d", issue, secured.gateway.address, "batchgate.v1.BatchSystem/IssueJob"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert plaintext.returncode != 0


def test_the_node_example_speaks_mutual_tls_with_a_token(secured: Secured) -> None:
    node_example = EXAMPLES / "node"
    if not (node_example / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("the Node example's packages are not installed: run scripts/install-examples")
    pki = secured.pki
    command = [
        # By name (the certificate has DNS:localhost): Node warns of a TLS server name that is an IP address.
        installed_tool("node"), str(node_example / "issue-and-follow.js"), "--address", secured.gateway.address.replace("127.0.0.1", "localhost"),
        "--tls-ca", pki.path("service-ca.pem"), "--tls-cert", pki.path("user.pem"), "--tls-key", pki.path("user.key"),
        "--count", "2", "--cores", "0.1", "exit 6",
    ]  # fmt: skip
    environment = {**os.environ, "BATCHGATE_TOKEN": secured.tokens["alice"]}
    # The example's job set is its own random one, not one of alice's: refused, and said so.
    refused = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=90)
    assert refused.returncode == 1 and refused.stderr.startswith("error: PERMISSION_DENIED: "), refused.stderr
    granted = write_tokens(secured.tokens.path.parent / "node-tokens", (Tenant("node", ("node-example-*",)),))
    secured.tokens.path.write_text(secured.tokens.path.read_text() + granted.path.read_text())
    os.kill(secured.gateway.process.pid, signal.SIGHUP)
    wait_until(lambda: "tokens file reloaded" in secured.gateway.log(), timeout=10, message="the reload")
    run = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "BATCHGATE_TOKEN": granted["node"]}, timeout=90)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("issued jobs ") and len(lines) == 3 and all("exit_status=6" in line for line in lines[1:]), run.stdout
