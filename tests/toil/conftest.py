"""Fixtures for the Toil plugin's tests: the batchgate service Toil's jobs go through."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import start_service

# Toil's test base class (ToilTest) asks for this fixture, which Toil defines in its own conftest.
from toil.test.conftest import rootpath  # noqa: F401

# Importing the plugin registers `--batchSystem batchgate` with Toil, whatever the install: an
# editable install hides it from Toil's own discovery (test_discovery checks the real install).
import toil_batch_system_batchgate  # noqa: F401

# Toil's workers start as `_toil_worker ...`, found on PATH: run the service as from a shell in
# which this virtualenv is active, as a user would.
VENV_PATH = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


@pytest.fixture(scope="module")
def batchgate_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Where Toil finds batchgate: a local backend today (the gateway speaks the same API)."""
    service = start_service(
        "local",
        tmp_path_factory.mktemp("local"),
        *("--cores", "2", "--memory", "4G", "--disk", "10G", "--kill-grace", "1"),
        env={"PATH": VENV_PATH},
    )
    yield service.address
    service.kill()
