"""The services the contract suite runs against. Each target starts what it needs and can
restart the process that holds the jobs, gently (SIGTERM) or not (kill -9)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import RunningService, start_service

from batchgate.v1 import batchgate_pb2_grpc as pb_grpc


@dataclass
class Target:
    name: str
    service: RunningService  # the process clients talk to
    # The most one job may ask for here (the suite asks for more to provoke RESOURCE_EXHAUSTED).
    max_cores: float
    max_memory: int
    # Which endings the suite can provoke here in seconds (a scheduler's own tests cover the rest).
    quick_wall_time: bool = True  # a one-second wall time is enforced within seconds
    checks_working_directory: bool = True  # a missing working directory fails the start
    # GetJobOutput has the output of the jobs the suite issues (False: the backend they go to
    # keeps none, and says so with FAILED_PRECONDITION).
    keeps_output: bool = True
    # The scheduler keeps a job's stdout and stderr as one log (Kubernetes' pod log, AWS Batch's
    # awslogs stream): STDOUT and STDERR both answer with all of it, each stream's lines in order.
    merges_output: bool = False

    def stub(self) -> pb_grpc.BatchSystemStub:
        return self.service.stub()

    def restart(self, *, crash: bool = False) -> None:
        """Restart the service clients talk to, on the same address and state."""
        if crash:
            self.service.kill()
        else:
            self.service.stop()
        self.service = self.service.restart()

    def close(self) -> None:
        self.service.kill()


LOCAL_ARGS = ("--cores", "4", "--memory", "4G", "--disk", "10G", "--kill-grace", "1")


@contextlib.contextmanager
def local_target(tmp_path: Path) -> Iterator[Target]:
    target = Target("local", start_service("local", tmp_path / "local", *LOCAL_ARGS), max_cores=4, max_memory=4 * 1024**3)
    try:
        yield target
    finally:
        target.close()


@contextlib.contextmanager
def gateway_in_front(tmp_path: Path, backend: RunningService, name: str = "gateway", **fields: Any) -> Iterator[Target]:
    """A gateway routing to `backend` (which the caller stops); clients talk to the gateway, and
    restart() restarts it."""
    gateway = start_service("gateway", tmp_path / "gateway", "--backends", f"{backend.name}={backend.address}")
    target = Target(name, gateway, **fields)
    try:
        yield target
    finally:
        target.close()


@contextlib.contextmanager
def gateway_target(tmp_path: Path) -> Iterator[Target]:
    """A local backend behind a gateway."""
    backend = start_service("local", tmp_path / "local", *LOCAL_ARGS)
    try:
        with gateway_in_front(tmp_path, backend, max_cores=4, max_memory=4 * 1024**3) as target:
            yield target
    finally:
        backend.kill()


# name -> factory; other backends' suites add theirs here.
TARGETS: dict[str, Callable[[Path], contextlib.AbstractContextManager[Target]]] = {
    "local": local_target,
    "gateway": gateway_target,
}

sys.path.insert(0, str(Path(__file__).parent.parent))
from slurm.contract_target import slurm_target  # noqa: E402  (a real Slurm; see tests/slurm)

TARGETS["slurm"] = slurm_target

from lsf.contract_target import lsf_target  # noqa: E402  (a fake LSF; see tests/lsf)

TARGETS["lsf"] = lsf_target
from mesos.contract_target import mesos_target  # noqa: E402  (the tests' own Mesos master)

TARGETS["mesos"] = mesos_target

from k8s.contract_target import k8s_target  # noqa: E402  (an emulated API server; see tests/k8s)

TARGETS["k8s"] = k8s_target
# The suite through a gateway runs on the local backend's target ("gateway"); each backend's own
# tests put it behind a gateway too (tests/*/test_*gateway*, test_a_gateway_...), which keeps
# the whole suite within its 20 minutes.
from awsbatch.contract_target import awsbatch_target  # noqa: E402  (moto's AWS Batch on a Docker engine; see tests/awsbatch)

TARGETS["awsbatch"] = awsbatch_target
