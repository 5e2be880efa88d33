"""A job's output for GetJobOutput: its pod's log, read through the official client
(CoreV1Api.read_namespaced_pod_log).

Kubernetes keeps a container's stdout and stderr as ONE log (the kubelet's container runtime
writes both streams, line by line, to the same file), so both streams of a job answer with that
log, lines of the two in the order the runtime read them. A job that named a file for a stream
(its stdout_path / stderr_path, opened inside its container) wrote that stream there instead:
it is read from that path if this service shares the filesystem, else NoOutput says where it
went.

The API has no tail in bytes: `tailLines` (lines from the end) and `limitBytes` (from the
start). A tail of N bytes asks for the last few lines, more at each try, until it has N bytes
or the whole log, so a 2 KiB tail of a long log never moves the whole log (the kubelet keeps up
to --container-log-max-size, 10 MiB by default).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from batchgate.errors import NoOutput, SchedulerError

from . import status
from .calls import api_message, cut, observed
from .manifest import CONTAINER_NAME

Object = dict[str, Any]

CHUNK_BYTES = 64 * 1024
WAIT_SECONDS = 0.5  # between looks at a followed job whose container has not started yet
FIRST_LINE_GUESS = 32  # bytes a line is taken to have at most, for the first try at a tail
MORE_LINES = 8  # how many times more lines each further try asks for
READ_TIMEOUT = (10, 30)  # (connect, each read) seconds, for a log read that does not follow (the quote of a failed job waits on it)


@dataclass
class JobPod:
    """What the driver tells a log reader about one job: how to find its pod now, and whether
    the job is still live (else a missing or unstarted pod will stay so)."""

    job_id: int
    job_name: str  # its Job's name (the job's backing id)
    find: Callable[[], Object | None]  # its newest pod, or None
    live: Callable[[], bool]


@dataclass
class PodLog:
    """Driver.output's answer (batchgate.driver.OutputChunks): the log of a job's pod, its last
    `tail_bytes` (0: all), then, with `follow`, what the job writes until its container stops."""

    core: client.CoreV1Api
    namespace: str
    backend: str
    job: JobPod
    tail_bytes: int
    follow: bool
    _cancelled: threading.Event = field(default_factory=threading.Event)
    _response: Any = None  # the open follow, to cut on cancel

    def __iter__(self) -> Iterator[bytes]:
        pod = self._started_pod()
        if pod is None:
            return  # cancelled while waiting
        name = pod["metadata"]["name"]
        skip = 0
        tail_lines: int | None = None
        if self.tail_bytes:
            data, tail_lines = self._tail(name)
            if not self.follow:
                yield data[-self.tail_bytes :]
                return
            skip = max(0, len(data) - self.tail_bytes)  # the follow below starts from the same lines
        yield from self._stream(name, tail_lines=tail_lines, skip=skip)

    def cancel(self) -> None:
        self._cancelled.set()
        cut(self._response)

    # ---- the pod ------------------------------------------------------------------------------

    def _started_pod(self) -> Object | None:
        """The job's pod once its container has started (running or terminated); raises
        NoOutput when it has no such pod (and, without follow, when it has not started yet)."""
        job = self.job
        while True:
            live = job.live()  # looked at before the pod: a job that has ended has its last pod
            pod = job.find()
            state = status.container_state(pod)
            if "running" in state or "terminated" in state:
                return pod
            if pod is None and not live:
                raise NoOutput(
                    job.job_id,
                    f"the pod of Job {job.job_name} is gone (deleted with its Job after ttlSecondsAfterFinished, "
                    "or by someone else), or was never created; its log went with it",
                )
            if not live:
                raise NoOutput(job.job_id, f"its container never started, so it has no log ({waiting(pod)})")
            if not self.follow:
                raise NoOutput(job.job_id, f"its container has not started yet ({waiting(pod)}); ask again, or follow it")
            if self._cancelled.wait(WAIT_SECONDS):
                return None

    # ---- reading ------------------------------------------------------------------------------

    def _tail(self, pod: str) -> tuple[bytes, int | None]:
        """At least the last `tail_bytes` of the log (or all of it) and how many lines that is
        (None: all of them)."""
        lines = self.tail_bytes // FIRST_LINE_GUESS + 1
        while True:
            data = self._read(pod, tail_lines=lines)
            got = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
            if got < lines:
                return data, None  # fewer lines than asked for: the whole log
            if len(data) >= self.tail_bytes:
                return data, lines
            lines *= MORE_LINES

    def _read(self, pod: str, *, tail_lines: int) -> bytes:
        response = self._open(pod, tail_lines=tail_lines, follow=False)
        try:
            data: bytes = response.read()
        except Exception as error:  # the connection dropped mid-answer
            response.close()
            raise SchedulerError(self.backend, f"reading the log of pod {pod}: {error}") from error
        finally:
            response.release_conn()
        return data

    def _stream(self, pod: str, *, tail_lines: int | None, skip: int) -> Iterator[bytes]:
        response = self._open(pod, tail_lines=tail_lines, follow=self.follow)
        self._response = response
        whole = False
        try:
            if self._cancelled.is_set():
                return
            for data in response.stream(CHUNK_BYTES, decode_content=False):
                if skip:
                    data, skip = data[skip:], max(0, skip - len(data))
                if data:
                    yield data
            whole = True
        except Exception as error:
            if not self._cancelled.is_set():
                raise SchedulerError(self.backend, f"reading the log of pod {pod}: {error}") from error
        finally:
            self._response = None
            if not whole:
                response.close()  # a connection left mid-answer is not used again
            response.release_conn()

    def _open(self, pod: str, *, tail_lines: int | None, follow: bool) -> Any:
        options: dict[str, Any] = {"container": CONTAINER_NAME, "follow": follow}
        if tail_lines is not None:
            options["tail_lines"] = tail_lines
        try:
            with observed(self.backend, "read pod log"):
                return self.core.read_namespaced_pod_log(
                    pod,
                    self.namespace,
                    _preload_content=False,
                    # A followed log stays open as long as the job runs and may be silent for hours.
                    _request_timeout=(READ_TIMEOUT[0], None) if follow else READ_TIMEOUT,
                    **options,
                )
        except ApiException as error:
            said = api_message(error)
            if error.status == 404:
                raise NoOutput(self.job.job_id, f"its pod {pod} is gone, and its log with it ({said})") from None
            if error.status == 400:  # the kubelet's "is waiting to start", or a container it no longer has
                raise NoOutput(self.job.job_id, f"the log of pod {pod} cannot be read: {said}") from None
            raise SchedulerError(self.backend, f"reading the log of pod {pod}: {said}") from error
        except Exception as error:  # no answer: the API server cannot be reached
            raise SchedulerError(self.backend, f"reading the log of pod {pod}: {error}") from error


def waiting(pod: Object | None) -> str:
    """Why a pod's container is not running, in the cluster's words."""
    if pod is None:
        return "no pod yet"
    name = pod["metadata"]["name"]
    if "deletionTimestamp" in pod["metadata"]:
        return f"pod {name} is being deleted"
    reason = status.unschedulable(pod) or status.start_problem(pod)
    if reason is None:
        state = status.container_state(pod).get("waiting") or {}
        reason = state.get("reason") or (pod.get("status") or {}).get("phase") or "Pending"
    return f"pod {name}: {reason}"


# ---- a stream the job sent to a file of its own ---------------------------------------------------


@dataclass
class FileOutput:
    """A stream the job named a file for (opened inside its container, so not in the pod log):
    read here when this service sees the same path (a shared filesystem), until the job has
    ended when following (batchgate.driver.OutputChunks)."""

    path: str
    job: JobPod
    stream: str  # "stdout" or "stderr", for messages
    tail_bytes: int
    follow: bool
    _cancelled: threading.Event = field(default_factory=threading.Event)

    def __iter__(self) -> Iterator[bytes]:
        job_id, path = self.job.job_id, self.path
        while True:
            live = self.follow and self.job.live()  # a followed job may not have made its file yet
            try:
                output = open(path, "rb")  # noqa: SIM115 - closed below
                break
            except FileNotFoundError:
                if not live:
                    where = "inside its container, not in its pod log"
                    raise NoOutput(job_id, f"its {self.stream} went to {path} (the file it named, {where}), which does not exist where this service runs") from None
            except OSError as error:
                raise NoOutput(job_id, f"its {self.stream} went to {path} (the file it named), which this service cannot read: {error.strerror}") from None
            if self._cancelled.wait(WAIT_SECONDS):
                return
        with output:
            if self.tail_bytes:
                output.seek(max(0, output.seek(0, os.SEEK_END) - self.tail_bytes))
            while True:
                live = self.follow and self.job.live()  # looked at before the read: an ended job has written all
                data = output.read(CHUNK_BYTES)
                if data:
                    yield data
                elif not live or self._cancelled.wait(WAIT_SECONDS):
                    return

    def cancel(self) -> None:
        self._cancelled.set()
