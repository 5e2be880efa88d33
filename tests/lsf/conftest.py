"""Fixtures for the LSF tests: a fresh fake LSF per test, and drivers attached to recorders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lsf_cluster import Attached, FakeLsf, attach_driver


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeLsf]:
    cluster = FakeLsf(tmp_path / "lsf-cluster")
    yield cluster
    cluster.shutdown()


@pytest.fixture
def attach(fake: FakeLsf) -> Iterator:
    """Make LsfDrivers on `fake` (see attach_driver); they are closed after the test."""
    made: list[Attached] = []

    def factory(instance_id: str = "", **options: object) -> Attached:
        made.append(attach_driver(fake, instance_id, **options))
        return made[-1]

    yield factory
    for attached in made:
        attached.driver.close()
