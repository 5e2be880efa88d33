"""A job's output, for GetJobOutput and for the kit's quote of a failed job's stderr: read from
CloudWatch Logs, where AWS Batch's awslogs log driver (its default) puts it.

- Where: DescribeJobs names the job's log stream (`container.logStreamName`, also on each
  attempt's container) once the attempt is RUNNING; its log group is /aws/batch/job unless the
  job definition's logConfiguration names an awslogs-group (AWS Batch API reference,
  ContainerDetail / AttemptContainerDetail; user guide, "Use the awslogs log driver").
- ONE stream for both: the awslogs driver passes the container's STDOUT and STDERR on together,
  a line an event, with nothing saying which was which (same user guide page). So STDOUT and
  STDERR both answer with that stream, in the order the lines were written.
- Reading: GetLogEvents with startFromHead=True, paging with nextToken; "if you have reached the
  end of the stream, it returns the same token you passed in" (CloudWatch Logs API reference,
  GetLogEvents' nextForwardToken), which is where a read stops. Each event is one line.
- tail_bytes: read backwards from the end (startFromHead=False, then nextBackwardToken) only as
  far as the tail needs, with `limit` at tail_bytes/2 + 1 events (every line here is at least 2
  bytes: one character, as CloudWatch takes no empty message, and its newline), so the kit's
  2 KiB stderr quote of a job that wrote gigabytes is one small call, not a read of them all.
  The first answer's nextForwardToken is where following goes on from.
- follow: poll (at the driver's poll interval) until the job is SUCCEEDED or FAILED and the
  stream is drained; a job without its stream yet is waited for.
- A stream the job named a file for (its stdout_path/stderr_path) is not in its log at all: that
  file is read instead, at the same path where this service runs (a file system the service and
  the instances share, such as the job definition's host paths); if it is not there, that is said.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from batchgate.errors import NoOutput, SchedulerError

from .aws import Calls, Refused, Unreachable
from .jobs import AWSLOGS, Phase, Seen

PAGE_EVENTS = 10_000  # GetLogEvents' most events a call
MIN_LINE_BYTES = 2  # one character (CloudWatch takes no empty message) and the newline
FILE_CHUNK_BYTES = 64 * 1024
NOT_FOUND = "ResourceNotFoundException"


class NotYet(Exception):
    """Nothing to read yet; it may come while the job runs (the message says why, for a caller
    who does not follow)."""


class FollowedOutput:
    """A job's output as batchgate.driver.OutputChunks: what is there (or its tail), then, with
    `follow`, what comes until the job has ended. `describe` answers the job's latest state and
    raises NoOutput when AWS has no record of it."""

    def __init__(
        self, job_id: int, describe: Callable[[], Seen], *, tail_bytes: int, follow: bool, interval: float, backend: str
    ) -> None:
        self.job_id = job_id
        self._describe = describe
        self.tail_bytes = tail_bytes
        self.follow = follow
        self._interval = interval
        self._backend = backend
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    def __iter__(self) -> Iterator[bytes]:
        try:
            while not self._cancelled.is_set():
                seen = self._describe()  # before reading: a job that had ended has written it all
                ended = seen.phase is Phase.ENDED
                try:
                    yield from self._new_output(seen)
                except NotYet as why:
                    if ended or not self.follow:
                        raise NoOutput(self.job_id, str(why)) from None
                else:
                    if ended or not self.follow:
                        return
                if self._cancelled.wait(self._interval):
                    return
        except (Unreachable, Refused) as error:
            raise SchedulerError(self._backend, f"reading the output of job {self.job_id}: {error}") from error
        finally:
            self.close()

    def _new_output(self, seen: Seen) -> Iterator[bytes]:
        """What was written since the last call (the first time: all of it, or its tail).
        Raises NotYet, or NoOutput when there will never be any."""
        raise NotImplementedError

    def close(self) -> None:
        """Let go of what reading holds."""


class LogStreamOutput(FollowedOutput):
    """The job's container log in CloudWatch Logs (both STDOUT and STDERR: one stream)."""

    def __init__(self, job_id: int, describe: Callable[[], Seen], logs: Calls, **options: Any) -> None:
        super().__init__(job_id, describe, **options)
        self._logs = logs
        self._token: str | None = None  # where the next forward read starts; None: the head
        self._started = False

    def _new_output(self, seen: Seen) -> Iterator[bytes]:
        if seen.log_driver != AWSLOGS:
            raise NoOutput(self.job_id, f"its job definition sends its output to the {seen.log_driver!r} log driver, not to CloudWatch Logs")
        if not seen.log_stream:
            if seen.phase is Phase.ENDED:
                raise NoOutput(
                    self.job_id,
                    f"AWS Batch job {seen.backing_id} ended ({seen.status}) without a log stream: its container never ran"
                    + (f" ({seen.reason})" if seen.reason else ""),
                )
            raise NotYet(f"AWS Batch job {seen.backing_id} is {seen.status}: it has no log stream until it runs; ask again, or follow it")
        place = {"logGroupName": seen.log_group, "logStreamName": seen.log_stream}
        try:
            if not self._started and self.tail_bytes:
                tail = self._tail(place)
                self._started = True
                yield tail
                if not self.follow:
                    return  # the tail is all that was asked
            self._started = True
            yield from self._forward(place)
        except Refused as error:
            if error.code != NOT_FOUND:
                raise
            where = f"{seen.log_group}/{seen.log_stream}"
            if seen.phase is Phase.ENDED:
                raise NoOutput(
                    self.job_id,
                    f"its log stream {where} is not in CloudWatch Logs (gone after the log group's retention, or deleted)",
                ) from None
            raise NotYet(f"its log stream {where} has nothing in it yet; ask again, or follow it") from None

    def _forward(self, place: dict[str, str]) -> Iterator[bytes]:
        while not self._cancelled.is_set():
            arguments: dict[str, Any] = {**place, "startFromHead": True}
            if self._token:
                arguments["nextToken"] = self._token
            answer = self._logs("get_log_events", **arguments)
            data = lines(answer.get("events", []))
            if data:
                yield data
            following = answer.get("nextForwardToken")
            if not following or following == self._token:  # the end of the stream, for now
                return
            self._token = following

    def _tail(self, place: dict[str, str]) -> bytes:
        limit = min(PAGE_EVENTS, self.tail_bytes // MIN_LINE_BYTES + 1)
        answer = self._logs("get_log_events", **place, startFromHead=False, limit=limit)
        self._token = answer.get("nextForwardToken")
        pieces = [lines(answer.get("events", []))]
        size = len(pieces[0])
        backward = answer.get("nextBackwardToken")
        while size < self.tail_bytes and answer.get("events") and backward:
            answer = self._logs("get_log_events", **place, startFromHead=False, limit=limit, nextToken=backward)
            earlier = lines(answer.get("events", []))
            pieces.insert(0, earlier)
            size += len(earlier)
            if answer.get("nextBackwardToken") == backward:  # the head of the stream
                break
            backward = answer.get("nextBackwardToken")
        return b"".join(pieces)[-self.tail_bytes :]


class NamedFileOutput(FollowedOutput):
    """The file a job named for this stream, where this service can read it."""

    def __init__(self, job_id: int, describe: Callable[[], Seen], path: str, stream: str, **options: Any) -> None:
        super().__init__(job_id, describe, **options)
        self.path = path
        self.stream = stream
        self._file: BinaryIO | None = None

    def _new_output(self, seen: Seen) -> Iterator[bytes]:
        if self._file is None:
            self._file = self._open(seen)
            if self.tail_bytes:
                size = self._file.seek(0, os.SEEK_END)
                self._file.seek(max(0, size - self.tail_bytes))
        while chunk := self._file.read(FILE_CHUNK_BYTES):
            yield chunk

    def _open(self, seen: Seen) -> BinaryIO:
        try:
            return open(self.path, "rb")  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            said = f"it sent its {self.stream} to the file it named, {self.path}, which does not exist"
            if seen.phase is Phase.ENDED:
                raise NoOutput(
                    self.job_id, f"{said} where this service runs (a file on the instance is read here only on a file system both share)"
                ) from None
            raise NotYet(f"{said} yet; ask again, or follow it") from None
        except OSError as error:
            raise NoOutput(self.job_id, f"its {self.stream} file {self.path} cannot be read: {error.strerror}") from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def lines(events: list[dict[str, Any]]) -> bytes:
    """GetLogEvents' events as the lines the job wrote (the awslogs driver sends one a line,
    without its newline)."""
    return b"".join(f"{event.get('message', '')}\n".encode() for event in events)
