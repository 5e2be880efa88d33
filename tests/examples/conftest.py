"""A live service for the examples to talk to: a local backend alone, and the same behind a gateway."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import RunningService, start_service


@pytest.fixture(params=["local", "gateway"])
def service_address(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh BatchSystem with 2 cores, served by the local backend or by a gateway in front of it."""
    services: list[RunningService] = [start_service("local", tmp_path / "local", "--cores", "2")]
    if request.param == "gateway":
        backends = f"local={services[0].address}"
        services.append(start_service("gateway", tmp_path / "gateway", "--backends", backends))
    yield services[-1].address
    for service in reversed(services):
        service.kill()
