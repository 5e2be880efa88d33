"""Toil finds the plugin on its own after a normal `pip install`, in a fresh interpreter.

Toil discovers plugins with pkgutil.iter_modules() over top-level modules named
toil_batch_system_*. The default editable install imports fine but hides such a module from
pkgutil, so this builds and installs the project as a user's `pip install .` does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]

# Run in the fresh interpreter. The plugin is not imported here: Toil has to find it.
FIND_THE_PLUGIN = textwrap.dedent(
    """
    import sys

    import configargparse
    from toil.batchSystems.registry import get_batch_system, get_batch_systems
    from toil.common import Config, addOptions

    assert "batchgate" in get_batch_systems(), get_batch_systems()
    parser = configargparse.ArgParser()
    addOptions(parser)
    options = parser.parse_args(["jobstore", "--batchSystem", "batchgate", "--batchgateAddress", "127.0.0.1:1"])
    config = Config()
    config.setOptions(options)
    plugin = sys.modules[config.load_batch_system_class().__module__]
    print(plugin.__file__, config.batchgate_address)
    """
)


@pytest.mark.slow
def test_toil_finds_the_installed_plugin_by_itself(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the working tree
    shutil.copytree(
        REPOSITORY, source, ignore=shutil.ignore_patterns(".git", ".venv", "var", "build", "*.egg-info", "__pycache__")
    )
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site), str(source)],
        check=True,
    )

    found = subprocess.run(
        [sys.executable, "-c", FIND_THE_PLUGIN],
        cwd=tmp_path,  # not the repository, whose folders could stand in for the installed ones
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert found.returncode == 0, found.stderr
    plugin_file, address = found.stdout.split()
    assert Path(plugin_file) == site / "toil_batch_system_batchgate" / "batch_system.py"
    assert address == "127.0.0.1:1"
