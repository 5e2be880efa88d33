"""Fixtures shared by every test: real services in temporary state directories."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import RunningService, start_service  # noqa: E402


@pytest.fixture
def local_service(tmp_path: Path) -> Iterator[RunningService]:
    """A local backend with a small budget (2 cores, 2 GiB, 10 GiB disk) and a short kill grace."""
    service = start_service("local", tmp_path / "local", "--cores", "2", "--memory", "2G", "--disk", "10G", "--kill-grace", "1")
    yield service
    service.kill()
