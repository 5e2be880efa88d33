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
        merges_output=True,  # a job's stdout and stderr are one CloudWatch Logs stream
    )
    try:
        yield target
    finally:
        target.close()
        store = Store(state_dir / "awsbatch.sqlite")
        terminate_tagged(moto, store.instance_id())
        store.close()
