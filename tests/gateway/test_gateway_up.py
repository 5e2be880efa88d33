"""`batchgate up`, run as a user runs it: the local backend and a gateway, one address."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
from harness import collect_updates, spec, wait_gone, wait_until

from batchgate.v1 import batchgate_pb2 as pb
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc

BATCHGATE = str(Path(sys.executable).parent / "batchgate")
ANY_PORT = "127.0.0.1:0"


def start_up(tmp_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    addresses = [f"--{flag}={ANY_PORT}" for flag in ("listen", "local-listen", "metrics-listen", "local-metrics-listen")]
    files = ["--state-dir", str(tmp_path / "var"), "--ready-file", str(tmp_path / "up.json")]
    command = [BATCHGATE, "up", *addresses, *files, *extra]
    with open(tmp_path / "up.log", "wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def test_up_serves_jobs_through_the_gateway_and_sigterm_stops_both(tmp_path: Path) -> None:
    up = start_up(tmp_path, "--cores", "1")  # a flag for the local backend
    try:
        wait_until(lambda: (tmp_path / "up.json").exists() or up.poll() is not None, 60, message="batchgate up to serve")
        assert up.poll() is None, (tmp_path / "up.log").read_text()
        ready = json.loads((tmp_path / "up.json").read_text())
        with grpc.insecure_channel(ready["address"]) as channel:
            stub = pb_grpc.BatchSystemStub(channel)
            capabilities = stub.GetCapabilities(pb.GetCapabilitiesRequest())
            assert capabilities.backend == "gateway"
            assert [(b.backend, b.max_cores) for b in capabilities.backends] == [("local", 1.0)]
            job_id = stub.IssueJob(pb.IssueJobRequest(spec=spec("exit 7"))).job_id
            (update,) = collect_updates(stub, 1)
        assert (update.job_id, update.backend, update.exit_status) == (job_id, "local", 7)

        up.send_signal(signal.SIGTERM)

        assert up.wait(timeout=60) == 0
        wait_gone(list(ready["pids"].values()))
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)


def test_up_exits_with_an_error_when_a_service_cannot_start(tmp_path: Path) -> None:
    up = start_up(tmp_path, "--cores", "many")
    try:
        assert up.wait(timeout=60) != 0
        assert "--cores" in (tmp_path / "up.log").read_text()
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
