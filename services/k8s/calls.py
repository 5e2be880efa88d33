"""API calls as the kit's scheduler metrics count them (batchgate_scheduler_commands_total and
batchgate_scheduler_command_duration_seconds), by operation ("create job", "list pods"...), and
what every caller does with an answer: its error message, and cutting a stream short."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException

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


def api_message(error: ApiException) -> str:
    """The message of the API server's Status, else the HTTP status."""
    try:
        return str(json.loads(error.body)["message"])
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"


def cut(response: Any) -> None:
    """Shut an open streaming response's socket (a watch, a followed log): the thread blocked
    reading it wakes up with an error."""
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
