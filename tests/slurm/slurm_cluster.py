"""The real single-node Slurm the Slurm tests run against, and drivers attached to recorders.

`ensure_slurm` runs scripts/slurm-up, which installs and starts Slurm when it is missing: a test
that needs Slurm fails, never skips, when Slurm cannot be had.
(A module of its own, not conftest.py: every test directory has a conftest module.)
"""

from __future__ import annotations

import collections
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from batchgate.driver import Ending, Job, SubmittedJob
from batchgate.endings import Outcome, outcome_of
from batchgate.services.slurm.driver import SlurmDriver

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


class Recorder:
    """JobEvents that keeps every report a driver makes, for tests to wait on and count, as the
    kit would publish it (the exit-reason rule applied)."""

    name = "slurm"

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.starts: dict[int, tuple[str | None, float | None]] = {}
        self.ends: list[tuple[int, Outcome]] = []

    def started(self, job_id: int, *, backing_id: str | None = None, at: float | None = None) -> None:
        with self._changed:
            self.starts[job_id] = (backing_id, at)
            self._changed.notify_all()

    def ended(self, job_id: int, ending: Ending) -> None:
        with self._changed:
            self.ends.append((job_id, outcome_of(ending)))
            self._changed.notify_all()

    def checkpoint(self, key: str, value: int) -> None:
        raise AssertionError("a scheduler driver keeps no checkpoints")

    def checkpoints(self) -> dict[str, int]:
        return {}

    def wait_started(self, job_id: int, timeout: float = 30.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: job_id in self.starts, timeout):
                raise AssertionError(f"job {job_id} did not start within {timeout} s")

    def outcome(self, job_id: int, timeout: float = 30.0) -> Outcome:
        """The one outcome reported for `job_id` (waiting for it)."""
        with self._changed:
            if not self._changed.wait_for(lambda: job_id in self.ended_ids(), timeout):
                queue = squeue("--states=all", "--Format=JobID:|,State:|,Reason:|,Comment:")
                raise AssertionError(f"job {job_id} did not end within {timeout} s; reports so far: {self.ends}\nsqueue:\n{queue}")
            (outcome,) = [outcome for ended, outcome in self.ends if ended == job_id]
            return outcome

    def ended_ids(self) -> collections.Counter[int]:
        return collections.Counter(job_id for job_id, _ in self.ends)


def make_job(job_id: int, command: str, **fields: object) -> Job:
    """A small job: one core, 64 MiB, no disk, unless told otherwise."""
    defaults: dict[str, object] = {"name": f"test-{job_id}", "cores": 1.0, "memory": 64 * 1024**2, "disk": 0}
    return Job(job_id=job_id, command=command, **{**defaults, **fields})  # type: ignore[arg-type]


@dataclass
class Attached:
    """A driver attached to a recorder, as the kit would attach it."""

    driver: SlurmDriver
    events: Recorder
    instance_id: str

    def submit(self, *jobs: Job) -> list[SubmittedJob]:
        backing_ids = self.driver.submit(jobs)
        assert all(backing_ids), f"sbatch refused a job: {self.events.ends}"
        return [SubmittedJob(job, backing_id) for job, backing_id in zip(jobs, backing_ids, strict=True)]


def attach_driver(instance_id: str = "", **options: object) -> Attached:
    """A SlurmDriver attached to a new Recorder, with a fresh instance id unless given one."""
    options.setdefault("poll_interval", TEST_POLL_INTERVAL)
    options.setdefault("command_timeout", 30.0)
    attached = Attached(SlurmDriver(**options), Recorder(), instance_id or uuid.uuid4().hex[:12])  # type: ignore[arg-type]
    attached.driver.attach(attached.events, attached.instance_id)
    return attached


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
