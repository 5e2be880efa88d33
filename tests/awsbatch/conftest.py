"""Fixtures for the AWS Batch backend's tests: moto's AWS Batch server running jobs as real
containers (tests/awsbatch/moto_batch.py), the service in front of it, and drivers attached to a
recorder as the kit would attach them."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import RunningService, start_service  # noqa: E402
from moto_batch import CREDENTIALS, REGION, TEST_ARGS, MotoBatch, moto_batch, shared_moto, terminate_tagged  # noqa: E402
from awsbatch_recorder import DriverFactory, Recorder  # noqa: E402

from batchgate.services.awsbatch.driver import AwsBatchDriver, Settings  # noqa: E402
from batchgate.store import Store  # noqa: E402


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def moto() -> MotoBatch:
    """The session's moto (each test's jobs carry their own service's tags)."""
    return shared_moto()


@pytest.fixture
def own_moto(tmp_path: Path) -> Iterator[MotoBatch]:
    """A moto of this test's own, for tests that change how it behaves or stop it."""
    with moto_batch(tmp_path) as running:
        yield running


@pytest.fixture
def awsbatch(moto: MotoBatch, tmp_path: Path) -> Iterator[RunningService]:
    """`batchgate serve awsbatch` in front of the session's moto."""
    state_dir = tmp_path / "awsbatch"
    service = start_service("awsbatch", state_dir, *moto.service_args(*TEST_ARGS), env=CREDENTIALS)
    yield service
    service.kill()
    store = Store(state_dir / "awsbatch.sqlite")
    terminate_tagged(moto, store.instance_id())
    store.close()


@pytest.fixture
def attach(moto: MotoBatch) -> Iterator[DriverFactory]:
    """Make AwsBatchDrivers attached to recorders (settings override the test ones)."""
    made: list[tuple[AwsBatchDriver, str]] = []

    def factory(instance_id: str = "", events: Recorder | None = None, **settings: object) -> tuple[AwsBatchDriver, Recorder]:
        defaults: dict[str, object] = {
            "region": REGION,
            "endpoint_url": moto.endpoint,
            "job_queue": "batchgate-test-queue",
            "job_definition": "batchgate-test-definition",
            "poll_interval": 0.2,
            "minimum_timeout": 1,
        }
        driver = AwsBatchDriver(Settings(**{**defaults, **settings}))  # type: ignore[arg-type]
        events = events or Recorder()
        instance_id = instance_id or uuid.uuid4().hex[:12]
        driver.attach(events, instance_id)
        made.append((driver, instance_id))
        return driver, events

    yield factory
    for driver, instance_id in made:
        driver.close()
        terminate_tagged(moto, instance_id)
