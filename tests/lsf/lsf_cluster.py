"""The fake LSF the LSF tests run against (tests/lsf/fake, written from IBM's documentation), and
LsfDrivers attached to recorders.

Each FakeLsf is a state directory: the cluster's hosts and queues (config.json), its lsf.conf,
its jobs, and the faults a test injects. Its commands reach only the processes given its `env`
(the service under test) or drivers given its `runner`: nothing else on this machine sees an LSF.
(A module of its own, not conftest.py: every test directory has a conftest module.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from driver_recording import MIB, Attached, Recorder, attach, make_job
from harness import RunningService, start_service

from batchgate.hpc import run_command
from batchgate.services.lsf.driver import LsfDriver

__all__ = ["MIB", "Attached", "make_job"]  # for the tests, from driver_recording

FAKE = Path(__file__).resolve().parent / "fake"
TEST_POLL_INTERVAL = 0.2
# An LSF whose bjobs has -json, and one from before -json and -o: only the classic output.
LSF_VERSIONS = {"lsf10-json": "10.1.0.13", "lsf8-classic": "8.0.1"}


class FakeLsf:
    def __init__(
        self,
        root: Path,
        *,
        hosts: Sequence[dict[str, object]] = ({"name": "lsfhost1", "cores": 4, "memory_mb": 4096, "tmp_mb": 10240},),
        minute_seconds: float = 1.0,
        clean_period: float = 3600.0,
        unit_for_limits: str = "MB",
        answer_delay: float = 0.0,
        version: str = "10.1.0.13",
        queues: dict[str, float | None] | None = None,
    ) -> None:
        self.root = root
        (root / "conf").mkdir(parents=True, exist_ok=True)
        settings = {
            "hosts": list(hosts),
            "queues": queues or {"normal": None, "short": None},  # name: RUNLIMIT in minutes, or None
            "version": version,  # LSF's: before 10.1.0.2 bjobs has no -json; an old one (8.x) no -o
            "default_queue": "normal",
            "minute_seconds": minute_seconds,  # the length of one -W minute here
            "clean_period": clean_period,  # lsb.params CLEAN_PERIOD
            "kill_grace": 1.0,
            "answer_delay": answer_delay,  # seconds each client command waits, as for mbatchd's answer
        }
        (root / "config.json").write_text(json.dumps(settings))
        (root / "conf" / "lsf.conf").write_text(f"LSF_UNIT_FOR_LIMITS={unit_for_limits}\n" if unit_for_limits else "")

    @property
    def env(self) -> dict[str, str]:
        """The environment of a process that is to see this LSF (and no other)."""
        return {"PATH": f"{FAKE}:{os.environ['PATH']}", "LSF_FAKE_STATE": str(self.root), "LSF_ENVDIR": str(self.root / "conf")}

    def runner(self, argv: Sequence[str], stdin: str | None, timeout: float) -> str:
        """A Runner (batchgate.hpc) that runs LSF's commands against this fake."""
        environment = [f"{name}={value}" for name, value in self.env.items()]
        return run_command(["/usr/bin/env", *environment, str(FAKE / argv[0]), *argv[1:]], stdin, timeout)

    def run(self, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """An LSF command as a user would type it (an admin's bkill, say)."""
        return subprocess.run([str(FAKE / argv[0]), *argv[1:]], input=stdin, capture_output=True, text=True, env={**os.environ, **self.env})

    def inject(self, command: str, fault: str, *, times: int = 1, seconds: float | None = None) -> None:
        """Make the next `times` calls of `command` (or all within `seconds`) meet `fault`."""
        path = self.root / "faults.json"
        faults = json.loads(path.read_text()) if path.exists() else {}
        entry: dict[str, object] = {"fault": fault, "until": time.time() + seconds} if seconds else {"fault": fault, "times": times}
        faults.setdefault(command, []).append(entry)
        path.write_text(json.dumps(faults))

    def jobs(self) -> dict[int, tuple[dict, dict]]:
        """Every job LSF was given: its submission and its state."""
        found = {}
        for directory in (self.root / "jobs").glob("*"):
            found[int(directory.name)] = (json.loads((directory / "job.json").read_text()), json.loads((directory / "state.json").read_text()))
        return found

    def prune(self, job_id: int, *, events: bool = False, accounting: bool = False) -> None:
        """Forget a job as LSF does once its event file (bhist) or accounting file (bacct) is gone."""
        path = self.root / "jobs" / str(job_id) / "state.json"
        state = json.loads(path.read_text())
        state.update(events_pruned=events or state.get("events_pruned", False), acct_pruned=accounting or state.get("acct_pruned", False))
        path.write_text(json.dumps(state))

    def shutdown(self) -> None:
        """Stop every job and supervisor this cluster still runs."""
        for _, state in self.jobs().values():
            for key in ("supervisor", "pid"):
                if state.get(key) and state["stat"] not in ("DONE", "EXIT"):
                    try:
                        os.killpg(state[key], signal.SIGKILL) if key == "pid" else os.kill(state[key], signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass


def start_lsf(fake: FakeLsf, state_dir: Path, *args: str) -> RunningService:
    """`batchgate serve lsf` seeing `fake` (and only this process sees it)."""
    return start_service("lsf", state_dir, "--lsf-poll-interval", "0.2", *args, env=fake.env)


def attach_driver(fake: FakeLsf, instance_id: str = "", **options: object) -> Attached:
    """An LsfDriver on `fake`, attached to a new Recorder, with a fresh instance id unless given."""
    options.setdefault("poll_interval", TEST_POLL_INTERVAL)
    options.setdefault("command_timeout", 20.0)
    options.setdefault("runner", fake.runner)
    jobs = lambda: f"the fake's jobs: {fake.jobs()}"  # noqa: E731
    return attach(LsfDriver(**options), Recorder("lsf", jobs), instance_id or uuid.uuid4().hex[:12])  # type: ignore[arg-type]
