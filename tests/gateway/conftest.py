from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from deployments import Deployment, start_deployment


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    running = start_deployment(tmp_path)
    yield running
    running.close()
