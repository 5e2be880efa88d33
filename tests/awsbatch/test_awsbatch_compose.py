"""compose.yaml's awsbatch service: under the `awsbatch` profile, configured by the environment
where compose runs, every variable it passes one the service reads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from moto_batch import ensure_docker

ROOT = Path(__file__).resolve().parents[2]


def compose_config(environment: dict[str, str]) -> dict[str, object]:
    ensure_docker()  # scripts/docker-up installs docker-compose too
    done = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "compose.yaml"), "--profile", "awsbatch", "config"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **environment},
    )
    config: dict[str, object] = yaml.safe_load(done.stdout)
    return config


def test_the_awsbatch_service_is_configured_by_the_environment() -> None:
    config = compose_config(
        {"BATCHGATE_AWSBATCH_JOB_QUEUE": "queue-1", "BATCHGATE_BACKENDS": "local=127.0.0.1:50061,awsbatch=127.0.0.1:50065"}
    )
    services = config["services"]
    assert isinstance(services, dict)
    awsbatch = services["awsbatch"]
    assert awsbatch["profiles"] == ["awsbatch"]
    assert awsbatch["command"][:3] == ["batchgate", "serve", "awsbatch"]
    assert awsbatch["environment"]["BATCHGATE_AWSBATCH_JOB_QUEUE"] == "queue-1"
    assert "local=127.0.0.1:50061,awsbatch=127.0.0.1:50065" in services["gateway"]["command"]

    # Every variable it passes on is one `batchgate serve awsbatch` reads (or AWS's own).
    help_text = subprocess.run(
        [str(Path(sys.executable).parent / "batchgate"), "serve", "awsbatch", "--help"], capture_output=True, text=True, check=True
    ).stdout
    read = set(re.findall(r"BATCHGATE_AWSBATCH_[A-Z_]+", help_text))
    passed = {name for name in awsbatch["environment"] if name.startswith("BATCHGATE_")}
    assert passed <= read, passed - read
