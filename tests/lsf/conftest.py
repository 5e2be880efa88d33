"""Fixtures for the LSF tests: a fresh fake LSF per test, and drivers attached to recorders.

`any_fake` and `attach_any` play two LSFs in turn: a 10.1 whose bjobs has -json, and an 8.0 that
has only the classic output (bjobs -w and -l); the cheap tests of how jobs end run on both."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lsf_cluster import LSF_VERSIONS, Attached, FakeLsf, attach_driver


@contextlib.contextmanager
def drivers_on(cluster: FakeLsf) -> Iterator[Callable[..., Attached]]:
    """Make LsfDrivers on `cluster` (see attach_driver); they are closed afterwards."""
    made: list[Attached] = []

    def factory(instance_id: str = "", **options: object) -> Attached:
        made.append(attach_driver(cluster, instance_id, **options))
        return made[-1]

    try:
        yield factory
    finally:
        for attached in made:
            attached.driver.close()


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeLsf]:
    cluster = FakeLsf(tmp_path / "lsf-cluster")
    yield cluster
    cluster.shutdown()


@pytest.fixture(params=list(LSF_VERSIONS.values()), ids=list(LSF_VERSIONS))
def any_fake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeLsf]:
    cluster = FakeLsf(tmp_path / "lsf-cluster", version=request.param)
    yield cluster
    cluster.shutdown()


@pytest.fixture
def attach(fake: FakeLsf) -> Iterator[Callable[..., Attached]]:
    with drivers_on(fake) as factory:
        yield factory


@pytest.fixture
def attach_any(any_fake: FakeLsf) -> Iterator[Callable[..., Attached]]:
    with drivers_on(any_fake) as factory:
        yield factory
