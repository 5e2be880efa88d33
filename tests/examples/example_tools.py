"""Where the examples live and the tools that run them (a missing tool fails a test, never skips it)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
INSTALL_HINT = "run scripts/install-examples (and scripts/install dev for grpcurl)"


def installed_tool(name: str) -> str:
    """The path of `name`, looked up in this virtualenv's bin first (where pip puts grpcurl)."""
    search_path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search_path)
    if found is None:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT}")
    return found
