"""The contract suite's AWS Batch target: a real `batchgate serve awsbatch` in front of moto's
AWS Batch server, whose jobs run as containers on the local Docker engine.

Registered in tests/contract/targets.py.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import start_service  # noqa: E402
from moto_batch import CREDENTIALS, TEST_ARGS, shared_moto, terminate_tagged  # noqa: E402
from targets import Target  # noqa: E402

from batchgate.store import Store  # noqa: E402
from batchgate.v1 import batchgate_pb2 as pb  # noqa: E402

# AWS schedules no disk; the contract asks for a limit to exceed (the instances' volumes).
MAX_DISK = ("--awsbatch-max-disk", "100G")


@contextlib.contextmanager
def awsbatch_target(tmp_path: Path) -> Iterator[Target]:
    moto = shared_moto()
    state_dir = tmp_path / "awsbatch"
    service = start_service("awsbatch", state_dir, *moto.service_args(*TEST_ARGS, *MAX_DISK), env=CREDENTIALS)
    capabilities = service.stub().GetCapabilities(pb.GetCapabilitiesRequest())
    target = Target(
        "awsbatch",
        service,
        max_cores=capabilities.max_cores,
        max_memory=capabilities.max_memory,
        # The working directory is the container's: a missing one fails the command (cd's own
        # message, exit 2), as it would on AWS; tests/awsbatch checks that.
        checks_working_directory=False,
    )
    try:
        yield target
    finally:
        target.close()
        store = Store(state_dir / "awsbatch.sqlite")
        terminate_tagged(moto, store.instance_id())
        store.close()


@contextlib.contextmanager
def gateway_awsbatch_target(tmp_path: Path) -> Iterator[Target]:
    """A gateway with the AWS Batch backend first and a local one second: the jobs the suite
    issues fit AWS Batch, so they run there, through the gateway; restart() restarts the gateway."""
    moto = shared_moto()
    awsbatch = start_service("awsbatch", tmp_path / "awsbatch", *moto.service_args(*TEST_ARGS, *MAX_DISK), env=CREDENTIALS)
    local = start_service("local", tmp_path / "local", "--cores", "1", "--memory", "1G", "--disk", "10G", "--kill-grace", "1")
    try:
        gateway = start_service("gateway", tmp_path / "gateway", "--backends", f"awsbatch={awsbatch.address},local={local.address}")
        capabilities = gateway.stub().GetCapabilities(pb.GetCapabilitiesRequest())
        target = Target(
            "gateway-awsbatch",
            gateway,
            max_cores=capabilities.max_cores,
            max_memory=capabilities.max_memory,
            checks_working_directory=False,
        )
        try:
            yield target
        finally:
            target.close()
    finally:
        local.kill()
        awsbatch.kill()
        store = Store(tmp_path / "awsbatch" / "awsbatch.sqlite")
        terminate_tagged(moto, store.instance_id())
        store.close()
