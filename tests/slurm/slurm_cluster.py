"""The real single-node Slurm the Slurm tests run against, and drivers attached to recorders.

`ensure_slurm` runs scripts/slurm-up, which installs and starts Slurm when it is missing: a test
that needs Slurm fails, never skips, when Slurm cannot be had.
(A module of its own, not conftest.py: every test directory has a conftest module.)
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from driver_recording import Attached, Recorder, attach, make_job

from batchgate.driver import SubmittedJob
from batchgate.services.slurm.driver import SlurmDriver

__all__ = ["Attached", "make_job"]  # for the tests, from driver_recording

ROOT = Path(__file__).resolve().parents[2]
SLURM_DIR = Path(os.environ.get("SLURM_DIR", "/tmp/batchgate-slurm"))
TEST_POLL_INTERVAL = 0.2
_up = False


def ensure_slurm() -> None:
    """Start (and if need be install) the test cluster; fail loudly if it will not come up."""
    global _up
    if _up:
        return
    done = subprocess.run([str(ROOT / "scripts" / "slurm-up")], capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/slurm-up failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    _up = True


def stop_controller() -> None:
    """Stop slurmctld, as an outage would: jobs keep running under slurmd."""
    pid = int((SLURM_DIR / "slurmctld.pid").read_text())
    os.kill(pid, 15)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            raise AssertionError("slurmctld did not stop")
        time.sleep(0.05)


def start_controller() -> None:
    global _up
    _up = False
    ensure_slurm()


def squeue(*args: str) -> str:
    return subprocess.run(["squeue", "--me", "--noheader", *args], capture_output=True, text=True, check=True).stdout


def cancel_tagged(instance_id: str) -> None:
    """Cancel whatever a test's driver left in Slurm (its jobs carry the instance id)."""
    ids = [
        job_id
        for job_id, _, comment in (line.partition("|") for line in squeue("--states=PD,R,CG,S", "--Format=JobID:|,Comment:").splitlines())
        if comment.strip().startswith(f"batchgate:{instance_id}:")
    ]
    if ids:
        subprocess.run(["scancel", *ids], check=True)


def attach_driver(instance_id: str = "", **options: object) -> Attached:
    """A SlurmDriver attached to a new Recorder, with a fresh instance id unless given one."""
    options.setdefault("poll_interval", TEST_POLL_INTERVAL)
    options.setdefault("command_timeout", 30.0)
    queue = lambda: "squeue:\n" + squeue("--states=all", "--Format=JobID:|,State:|,Reason:|,Comment:")  # noqa: E731
    return attach(SlurmDriver(**options), Recorder("slurm", queue), instance_id or uuid.uuid4().hex[:12])  # type: ignore[arg-type]


DriverFactory = Callable[..., Attached]


@dataclass
class SlowJobs:
    """Submitted when the session starts: a job over its one-minute limit (Slurm enforces time
    limits only every 30 s), and a quick job whose driver closed at once, to be adopted after
    Slurm has dropped it from the queue (MinJobAge, then a purge cycle of up to a minute)."""

    timed: Attached
    over_time: SubmittedJob
    forgotten_instance: str
    forgotten: SubmittedJob
