"""Real batchgate processes for tests: start one, talk to it, stop it gently or kill -9 it.

Services run as `python -m batchgate.server`-style subprocesses on ephemeral ports, each with its
own state directory, exactly as a user runs them; nothing is imported in-process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from batchgate.v1 import batchgate_pb2 as pb
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc

START_TIMEOUT = 30.0


@dataclass
class RunningService:
    name: str
    args: list[str]
    state_dir: Path
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    address: str = ""
    metrics_address: str = ""
    _channels: list[grpc.Channel] = field(default_factory=list)

    def stub(self) -> pb_grpc.BatchSystemStub:
        channel = grpc.insecure_channel(self.address)
        self._channels.append(channel)
        return pb_grpc.BatchSystemStub(channel)

    def channel(self) -> grpc.Channel:
        channel = grpc.insecure_channel(self.address)
        self._channels.append(channel)
        return channel

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, as a service manager stops it; returns the exit code."""
        self._close_channels()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """kill -9: no chance to clean up."""
        self._close_channels()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)

    def restart(self) -> RunningService:
        """Start the same service again on the same address and state."""
        host, port = self.address.rsplit(":", 1)
        args = [a for a in self.args]
        return start_service(self.name, self.state_dir, *args, listen=f"{host}:{port}", env=self.env, log_suffix="-restarted")

    def _close_channels(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()


def start_service(
    name: str,
    state_dir: Path,
    *args: str,
    listen: str = "127.0.0.1:0",
    env: dict[str, str] | None = None,
    log_suffix: str = "",
) -> RunningService:
    """Start `batchgate serve NAME ARGS` with its state in `state_dir`; return once it serves."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ready = state_dir / f"ready{log_suffix}.json"
    ready.unlink(missing_ok=True)
    log_path = state_dir / f"service{log_suffix}.log"
    environment = {**os.environ, **(env or {})}
    command = [
        str(Path(sys.executable).parent / "batchgate"),  # the installed command, as a user runs it
        "serve",
        name,
        "--listen",
        listen,
        "--metrics-listen",
        "127.0.0.1:0",
        "--state-dir",
        str(state_dir),
        "--ready-file",
        str(ready),
        *args,
    ]
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    service = RunningService(name, list(args), state_dir, log_path, env or {}, process)
    deadline = time.monotonic() + START_TIMEOUT
    while not ready.exists():
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} before serving:\n{service.log()}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{name} did not serve within {START_TIMEOUT} s:\n{service.log()}")
        time.sleep(0.02)
    info = json.loads(ready.read_text())
    service.address = info["address"]
    service.metrics_address = info["metrics"]
    return service


def collect_updates(
    stub: pb_grpc.BatchSystemStub, count: int, *, after: int = 0, job_set: str = "", timeout: float = 60.0
) -> list[pb.UpdatedJob]:
    """Read the stream from `after` until `count` updates arrived (or fail after `timeout`)."""
    found: list[pb.UpdatedJob] = []
    stream = stub.GetUpdatedJob(pb.GetUpdatedJobRequest(after_sequence=after, job_set=job_set), timeout=timeout)
    try:
        for response in stream:
            found.extend(response.updates)
            if len(found) >= count:
                break
    finally:
        stream.cancel()
    return found


def updates_within(
    stub: pb_grpc.BatchSystemStub, seconds: float, *, after: int = 0, job_set: str = ""
) -> list[pb.UpdatedJob]:
    """Every update the stream delivers from `after` within `seconds` (for asserting absence)."""
    found: list[pb.UpdatedJob] = []
    stream = stub.GetUpdatedJob(pb.GetUpdatedJobRequest(after_sequence=after, job_set=job_set), timeout=seconds)
    try:
        for response in stream:
            found.extend(response.updates)
    except grpc.RpcError as error:
        if error.code() is not grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    return found


def wait_until(predicate: object, timeout: float = 30.0, interval: float = 0.05, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def spec(command: str, **fields: object) -> pb.JobSpec:
    """A small job: 0.1 cores and 64 MiB unless told otherwise, so many fit on a test machine."""
    defaults: dict[str, object] = {"cores": 0.1, "memory": 64 * 1024**2, "disk": 1024**2}
    return pb.JobSpec(command=command, **{**defaults, **fields})


def job_output(
    stub: pb_grpc.BatchSystemStub, job_id: int, stream: int = pb.OUTPUT_STREAM_STDOUT, *, tail_bytes: int = 0, follow: bool = False
) -> bytes:
    """All GetJobOutput sends for a job's stream (or its tail), until it ends."""
    request = pb.GetJobOutputRequest(job_id=job_id, stream=stream, tail_bytes=tail_bytes, follow=follow)
    return b"".join(response.data for response in stub.GetJobOutput(request, timeout=60))


def job_output_refused(stub: pb_grpc.BatchSystemStub, job_id: int, *, follow: bool = False) -> BaseException:
    """Why GetJobOutput has no output for a job: its FAILED_PRECONDITION, as the client raises it."""
    from batchgate.errors import NoOutput, from_rpc_error

    try:
        list(stub.GetJobOutput(pb.GetJobOutputRequest(job_id=job_id, follow=follow), timeout=60))
    except grpc.RpcError as refused:
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION, refused
        error = from_rpc_error(refused)
        assert isinstance(error, NoOutput)
        return error
    raise AssertionError(f"job {job_id}'s output was answered")


def wait_gone(process_ids: Sequence[int], timeout: float = 30.0) -> None:
    import psutil

    def gone() -> bool:
        for pid in process_ids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    return False
            except psutil.NoSuchProcess:
                continue
        return True

    wait_until(gone, timeout, message=f"processes {list(process_ids)} to end")
