"""Two local backends with different budgets behind one gateway, all real processes; and a
client that follows the gateway's stream across its restarts."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from harness import RunningService, start_service

from batchgate.v1 import batchgate_pb2 as pb
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc

SMALL_CORES = 1.0
BIG_CORES = 4.0


@dataclass
class Deployment:
    small: RunningService  # "local-small": 1 core
    big: RunningService  # "local-big": 4 cores
    gateway: RunningService  # routes to local-small first, then local-big

    def restart_gateway(self, *, crash: bool) -> None:
        if crash:
            self.gateway.kill()
        else:
            self.gateway.stop()
        self.gateway = self.gateway.restart()

    def close(self) -> None:
        for service in (self.gateway, self.small, self.big):
            service.kill()


def start_local(tmp_path: Path, name: str, cores: float) -> RunningService:
    return start_service("local", tmp_path / name, "--name", name, "--cores", str(cores), "--memory", "2G", "--kill-grace", "1")


def start_deployment(tmp_path: Path) -> Deployment:
    small = start_local(tmp_path, "local-small", SMALL_CORES)
    big = start_local(tmp_path, "local-big", BIG_CORES)
    backends = f"local-small={small.address},local-big={big.address}"
    return Deployment(small, big, start_service("gateway", tmp_path / "gateway", "--backends", backends))


class ResumingReader:
    """A client following a stream the way a real one must: it keeps the last sequence it saw
    and, whenever the stream breaks, opens a new one after that sequence."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.updates: list[pb.UpdatedJob] = []
        self.breaks = 0
        self._changed = threading.Condition()
        self._done = threading.Event()
        self._stream: grpc.RpcContext | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout: float = 60.0) -> list[pb.UpdatedJob]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.updates) >= count, timeout):
                raise AssertionError(f"only {len(self.updates)} of {count} updates within {timeout} s")
            return list(self.updates)

    def stop(self) -> None:
        self._done.set()
        if self._stream is not None:
            self._stream.cancel()
        self._thread.join(timeout=10)

    def _read(self) -> None:
        while not self._done.is_set():
            cursor = self.updates[-1].sequence if self.updates else 0
            with grpc.insecure_channel(self.address) as channel:
                self._stream = pb_grpc.BatchSystemStub(channel).GetUpdatedJob(pb.GetUpdatedJobRequest(after_sequence=cursor))
                try:
                    for response in self._stream:
                        with self._changed:
                            self.updates.extend(response.updates)
                            self._changed.notify_all()
                except grpc.RpcError:
                    self.breaks += 1
            self._done.wait(0.1)
