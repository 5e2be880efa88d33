"""A fake Mesos master (fake_master.py) with agents, and `batchgate serve mesos` in front of it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

from fake_master import AgentSpec, FakeMesosMaster  # noqa: E402
from harness import RunningService, start_service  # noqa: E402

# Four small agents, like a small cluster: 2 cores, 2 GiB, 10 GiB of disk each.
AGENTS = [
    AgentSpec(f"agent-{index}.test", cpus=2, mem=2048, disk=10240, attributes={"rack": f"r{index % 2}", "name": f"agent-{index}"})
    for index in range(4)
]
SERVICE_ARGS = (
    "--mesos-refuse-seconds",
    "2",
    "--mesos-unreachable-timeout",
    "1",
    "--mesos-kill-grace",
    "1",
    "--mesos-kill-timeout",
    "20",
    "--mesos-failover-timeout",
    "1h",
)


def start_master(work_dir: Path, agents: list[AgentSpec] | None = None, **options: object) -> FakeMesosMaster:
    # Heartbeats, resends and allocations far more often than Mesos' defaults (15 s, 10 s, 1 s),
    # so that the tests' waits are short.
    options = {"heartbeat_interval": 0.5, "resend_interval": 0.5, "allocation_interval": 0.05, **options}
    return FakeMesosMaster(AGENTS if agents is None else agents, work_dir, **options).start()  # type: ignore[arg-type]


def start_mesos_service(state_dir: Path, master: FakeMesosMaster, *args: str, env: dict[str, str] | None = None) -> RunningService:
    return start_service("mesos", state_dir, "--mesos-master", master.address, *SERVICE_ARGS, *args, env=env)
