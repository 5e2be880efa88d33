"""The shared recorder of driver reports (tests/driver_recording.py), keeping checkpoints as the
store keeps them: the AWS Batch driver keeps one (where its census of an earlier run starts)."""

from __future__ import annotations

from collections.abc import Callable

from driver_recording import Recorder as ReportRecorder

from batchgate.services.awsbatch.driver import AwsBatchDriver


class Recorder(ReportRecorder):
    def __init__(self, checkpoints: dict[str, int] | None = None) -> None:
        super().__init__("awsbatch")
        self.saved: dict[str, int] = dict(checkpoints or {})

    def checkpoint(self, key: str, value: int) -> None:
        self.saved[key] = value

    def checkpoints(self) -> dict[str, int]:
        return dict(self.saved)


# The `attach` fixture: makes drivers attached to recorders (tests/awsbatch/conftest.py).
DriverFactory = Callable[..., tuple[AwsBatchDriver, Recorder]]
