"""JobEvents that keep what a driver reports, as the kit would publish it (the exit-reason rule
applied), for tests to wait on and count; checkpoints kept in memory, as the store keeps them."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable

from batchgate.driver import Ending
from batchgate.endings import Outcome, outcome_of
from batchgate.services.awsbatch.driver import AwsBatchDriver


class Recorder:
    name = "awsbatch"

    def __init__(self, checkpoints: dict[str, int] | None = None) -> None:
        self._changed = threading.Condition()
        self.starts: dict[int, tuple[str | None, float | None]] = {}
        self.ends: list[tuple[int, Outcome]] = []
        self.saved: dict[str, int] = dict(checkpoints or {})

    def started(self, job_id: int, *, backing_id: str | None = None, at: float | None = None) -> None:
        with self._changed:
            self.starts[job_id] = (backing_id, at)
            self._changed.notify_all()

    def ended(self, job_id: int, ending: Ending) -> None:
        with self._changed:
            self.ends.append((job_id, outcome_of(ending)))
            self._changed.notify_all()

    def checkpoint(self, key: str, value: int) -> None:
        self.saved[key] = value

    def checkpoints(self) -> dict[str, int]:
        return dict(self.saved)

    def outcome(self, job_id: int, timeout: float = 30.0) -> Outcome:
        """The one outcome reported for `job_id` (waiting for it)."""
        with self._changed:
            if not self._changed.wait_for(lambda: job_id in self.ended_ids(), timeout):
                raise AssertionError(f"job {job_id} did not end within {timeout} s; reports so far: {self.ends}")
            (outcome,) = [outcome for ended, outcome in self.ends if ended == job_id]
            return outcome

    def ended_ids(self) -> collections.Counter[int]:
        return collections.Counter(job_id for job_id, _ in self.ends)


# The `attach` fixture: makes drivers attached to recorders (tests/awsbatch/conftest.py).
DriverFactory = Callable[..., tuple[AwsBatchDriver, Recorder]]
