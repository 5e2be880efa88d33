"""The contract suite's Slurm target: a real `batchgate serve slurm` in front of the test cluster.

Register it in tests/contract/targets.py with
    from slurm.contract_target import slurm_target
    TARGETS["slurm"] = slurm_target
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import start_service  # noqa: E402
from slurm_cluster import cancel_tagged, ensure_slurm  # noqa: E402
from targets import Target  # noqa: E402

from batchgate.store import Store  # noqa: E402
from batchgate.v1 import batchgate_pb2 as pb  # noqa: E402


@contextlib.contextmanager
def slurm_target(tmp_path: Path) -> Iterator[Target]:
    ensure_slurm()
    state_dir = tmp_path / "slurm"
    service = start_service("slurm", state_dir, "--slurm-poll-interval", "0.2")
    capabilities = service.stub().GetCapabilities(pb.GetCapabilitiesRequest())
    target = Target(
        "slurm",
        service,
        max_cores=capabilities.max_cores,
        max_memory=capabilities.max_memory,
        quick_wall_time=False,  # whole minutes, checked every 30 s: tests/slurm/test_slurm_slow.py
        checks_working_directory=False,  # slurmd runs it in /tmp instead
    )
    try:
        yield target
    finally:
        target.close()
        store = Store(state_dir / "slurm.sqlite")
        cancel_tagged(store.instance_id())  # what the killed service left in Slurm
        store.close()
