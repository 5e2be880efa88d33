"""Fixtures shared by every test: real services in temporary state directories."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import RunningService, start_service  # noqa: E402

# Modules whose every test uses the one Slurm cluster this machine runs (through a module-wide
# deployment), besides tests/slurm and any test with "slurm" in its name or parameters.
USES_SLURM = {"test_status_page.py", "test_soak.py", "test_dashboard.py"}
# Tests that hold machine-wide resources: compose.yaml's fixed ports and its Docker project.
MACHINE_WIDE = {"test_compose.py"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Where each test runs when scripts/test spreads the suite over workers (pytest-xdist,
    --dist loadgroup): a module's tests together, so its module-wide services start once; and
    everything that uses the Slurm cluster, or holds what the whole machine shares, on one
    worker, one after another, since some Slurm tests stop and start its controller."""
    for item in items:
        path = item.path
        shared = (
            "slurm" in item.nodeid.lower()
            or path.parent.name == "slurm"
            or path.name in USES_SLURM
            or path.name in MACHINE_WIDE
        )
        item.add_marker(pytest.mark.xdist_group("machine-wide" if shared else item.nodeid.split("::")[0]))


@pytest.fixture
def local_service(tmp_path: Path) -> Iterator[RunningService]:
    """A local backend with a small budget (2 cores, 2 GiB, 10 GiB disk) and a short kill grace."""
    service = start_service("local", tmp_path / "local", "--cores", "2", "--memory", "2G", "--disk", "10G", "--kill-grace", "1")
    yield service
    service.kill()
