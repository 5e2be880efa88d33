"""The contract suite's Mesos targets: `batchgate serve mesos` in front of the tests' own Mesos
master (fake_master.py), directly and behind a gateway. restart() restarts the service (the
gateway, for the latter); the master and its tasks live on, as a real cluster's would.

Registered in tests/contract/targets.py.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from mesos_cluster import AGENTS, start_master, start_mesos_service  # noqa: E402
from targets import Target, gateway_in_front  # noqa: E402

MAX_CORES = max(agent.cpus for agent in AGENTS)
MAX_MEMORY = int(max(agent.mem for agent in AGENTS)) * 1024**2


@contextlib.contextmanager
def mesos_target(tmp_path: Path) -> Iterator[Target]:
    master = start_master(tmp_path / "mesos-master")
    try:
        target = Target(
            "mesos",
            start_mesos_service(tmp_path / "mesos", master),
            max_cores=MAX_CORES,
            max_memory=MAX_MEMORY,
            checks_working_directory=False,  # FAILED from the task's shell: tests/mesos/test_mesos.py
        )
        try:
            yield target
        finally:
            target.close()
    finally:
        master.stop()


@contextlib.contextmanager
def mesos_gateway_target(tmp_path: Path) -> Iterator[Target]:
    master = start_master(tmp_path / "mesos-master")
    backend = start_mesos_service(tmp_path / "mesos", master)
    try:
        with gateway_in_front(
            tmp_path,
            backend,
            "mesos-gateway",
            max_cores=MAX_CORES,
            max_memory=MAX_MEMORY,
            checks_working_directory=False,
        ) as target:
            yield target
    finally:
        backend.kill()
        master.stop()
