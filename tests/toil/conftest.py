"""Fixtures for the Toil plugin's tests: the batchgate service Toil's jobs go through."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# Toil's test base class (ToilTest) asks for this fixture, which Toil defines in its own conftest.
from toil.test.conftest import rootpath  # noqa: F401
from toil_services import ALL_BACKENDS, DEPLOYMENTS, running_batchgate

# Importing the plugin registers `--batchSystem batchgate` with Toil, whatever the install: an
# editable install hides it from Toil's own discovery (test_toil_discovery checks the real one).
import toil_batch_system_batchgate  # noqa: F401


@pytest.fixture(scope="module", params=DEPLOYMENTS)
def batchgate_address(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Where Toil finds batchgate, for each deployment in turn."""
    with running_batchgate(request.param, tmp_path_factory.mktemp(request.param)) as address:
        yield address


@pytest.fixture(scope="module", params=ALL_BACKENDS)
def any_backend_address(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """For what holds whatever the backend: a gateway, and a real Slurm (see ALL_BACKENDS)."""
    with running_batchgate(request.param, tmp_path_factory.mktemp(request.param)) as address:
        yield address
