from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_master import FakeMesosMaster  # noqa: E402
from mesos_cluster import start_master  # noqa: E402


@pytest.fixture
def master(tmp_path: Path) -> Iterator[FakeMesosMaster]:
    running = start_master(tmp_path / "mesos")
    yield running
    running.stop()
