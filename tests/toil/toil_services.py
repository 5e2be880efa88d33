"""The batchgate services Toil's jobs go through in these tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness import RunningService, start_service

# A local backend alone, or behind the gateway: the plugin must not tell the difference.
DEPLOYMENTS = ("local", "gateway")
# For what holds on any backend whatever its size: a gateway (with the local backend behind it)
# and a real Slurm. The local backend alone adds nothing the gateway does not cover, and a Toil
# workflow costs the suite half a minute.
ALL_BACKENDS = ("gateway", "slurm")

LOCAL_BUDGET = ("--cores", "2", "--memory", "4G", "--disk", "10G", "--kill-grace", "1")

# Toil's workers start as `_toil_worker ...`, found on PATH: run the backend as from a shell in
# which this virtualenv is active, as a user would.
VENV_PATH = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


@contextmanager
def running_batchgate(deployment: str, root: Path) -> Iterator[str]:
    """The address of a running deployment; its local backend is named 'local'."""
    services: list[RunningService] = []
    try:
        if deployment == "slurm":
            ensure_slurm()  # the Slurm tests' own cluster, installed and started if need be
            services.append(start_service("slurm", root / "slurm", "--slurm-poll-interval", "0.5", env={"PATH": VENV_PATH}))
        else:
            services.append(start_service("local", root / "local", *LOCAL_BUDGET, env={"PATH": VENV_PATH}))
        if deployment == "gateway":
            services.append(start_service("gateway", root / "gateway", "--backends", f"local={services[0].address}"))
        yield services[-1].address
    finally:
        for service in reversed(services):
            service.kill()


def ensure_slurm() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "slurm"))
    from slurm_cluster import ensure_slurm as start_the_cluster

    start_the_cluster()
