"""API calls as the kit's scheduler metrics count them (batchgate_scheduler_commands_total and
batchgate_scheduler_command_duration_seconds), by operation ("create job", "list pods"...)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from batchgate import metrics


@contextlib.contextmanager
def observed(backend: str, operation: str, *, timed: bool = True) -> Iterator[None]:
    """Count one call and its result; `timed` also records how long it took (not for a watch,
    which lasts as long as it is open)."""
    started = time.monotonic()
    result = "error"
    try:
        yield
        result = "ok"
    finally:
        metrics.SCHEDULER_COMMANDS.labels(backend, operation, result).inc()
        if timed:
            metrics.SCHEDULER_LATENCY.labels(backend, operation).observe(time.monotonic() - started)
