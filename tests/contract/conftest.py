from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from targets import TARGETS, Target


@pytest.fixture(params=sorted(TARGETS))
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    with TARGETS[request.param](tmp_path) as running:
        yield running
