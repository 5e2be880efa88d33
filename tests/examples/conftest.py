"""A live service for the examples to talk to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import start_service


@pytest.fixture
def service_address(tmp_path: Path) -> Iterator[str]:
    """A fresh BatchSystem with 2 cores: the local backend (the gateway serves the same API)."""
    service = start_service("local", tmp_path / "local", "--cores", "2")
    yield service.address
    service.kill()
