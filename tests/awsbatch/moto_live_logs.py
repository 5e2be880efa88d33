"""moto's server (`moto_server`'s arguments) with its AWS Batch jobs' container output published
to its CloudWatch Logs while the containers run, as AWS Batch's awslogs log driver does.

moto 5.2.5 (moto/batch/models.py, Job.run) does put a job's container output into its CloudWatch
Logs backend, in log group /aws/batch/job, stream "<definition>/default/<job id>", but only once
the container has exited, and DescribeJobs names no logStreamName until then. AWS Batch gives
each attempt its log stream when it reaches RUNNING (DescribeJobs' AttemptContainerDetail and
ContainerDetail, "Each container attempt receives a log stream name when they reach the RUNNING
status"), and the awslogs driver passes the container's STDOUT and STDERR lines on as they are
written (AWS Batch user guide, "Use the awslogs log driver"): one stream, one event a line.

So, and only in the tests, this launcher makes moto do that: when a job's container starts, the
job gets its log stream name (in DescribeJobs, as on AWS) and a thread follows the container's
log on the Docker engine (`docker logs --follow --timestamps`: stdout and stderr in the order
written) and puts each line, with the time Docker stamped it, into that stream. moto's own copy
at the container's end is replaced by waiting for that thread, so the job is SUCCEEDED or FAILED
only once its whole output is in CloudWatch Logs. Differences from AWS: lines are put at once
(the awslogs driver batches them, for up to 5 s by default); empty lines are left out, as
CloudWatch Logs takes no empty message (PutLogEvents: a message is at least 1 character).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import docker
from docker.models.containers import Container, ContainerCollection
from moto.batch import models as batch_models
from moto.server import main
from moto_batch import SERVER_LABEL  # this file's directory is the script's: moto_batch.py is beside it

DOCKER_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z")

_running_job = threading.local()  # the moto Job whose thread is running (Job.run's thread)


def _milliseconds(stamp: str) -> int | None:
    """Epoch milliseconds of Docker's RFC 3339 timestamp (nanoseconds, trailing zeros cut)."""
    match = DOCKER_TIMESTAMP.fullmatch(stamp)
    if not match:
        return None
    seconds = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    fraction = float(f"0.{match.group(2)}") if match.group(2) else 0.0
    return int((seconds + fraction) * 1000)


def _lines(chunks: Iterable[bytes]) -> Iterable[bytes]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending


class LiveLogs:
    """Stands in for moto's LogsBackend in one job: follows its containers' logs into the job's
    stream while they run, and makes moto's own put at the container's end wait for them."""

    def __init__(self, job: Any) -> None:
        self.job = job
        self.logs = job._log_backend
        self._shippers: list[threading.Thread] = []

    def started(self, container: Container) -> None:
        job = self.job
        job.log_stream_name = job._stream_name
        self.logs.ensure_log_group(job._log_group)
        self.logs.ensure_log_stream(job._log_group, job.log_stream_name)
        if job.latest_attempt:
            job.latest_attempt["container"]["logStreamName"] = job.log_stream_name
        shipper = threading.Thread(target=self._ship, args=(container.id,), name=f"logs-{job.job_id}", daemon=True)
        self._shippers.append(shipper)
        shipper.start()

    def _ship(self, container_id: str) -> None:
        client = docker.from_env()  # a connection of its own for as long as the container runs
        shipped = 0
        try:
            for line in _lines(client.api.logs(container_id, stream=True, follow=True, timestamps=True)):
                self._put(line)
                shipped += 1
            # A follower may be let go before it has read the end of a log written fast: once the
            # container has exited, read it whole and ship what the follower did not.
            for line in list(_lines(client.api.logs(container_id, stream=True, follow=False, timestamps=True)))[shipped:]:
                self._put(line)
        except docker.errors.APIError:
            pass  # the container was removed
        finally:
            client.close()

    def _put(self, line: bytes) -> None:
        stamp, _, message = line.decode("utf-8", errors="replace").partition(" ")
        at = _milliseconds(stamp)
        if at is not None and message:
            self.logs.put_log_events(self.job._log_group, self.job.log_stream_name, [{"timestamp": at, "message": message}])

    # ---- what moto's Job.run calls on its LogsBackend -------------------------------------------

    def ensure_log_group(self, name: str) -> None:
        self.logs.ensure_log_group(name)

    def ensure_log_stream(self, group: str, stream: str) -> None:
        self.logs.ensure_log_stream(group, stream)

    def put_log_events(self, group: str, stream: str, events: list[dict[str, Any]]) -> None:
        """moto's copy of the whole output once the container has exited: already shipped, line
        by line; wait until the shippers have put the last of it."""
        for shipper in self._shippers:
            shipper.join()


_job_run = batch_models.Job.run
_container_run = ContainerCollection.run


def _run_job(self: Any) -> None:
    self._log_backend = LiveLogs(self)
    _running_job.job = self
    try:
        _job_run(self)
    finally:
        _running_job.job = None


def _run_container(self: ContainerCollection, *args: Any, **kwargs: Any) -> Any:
    # Labelled with this server's pid, so that stopping it removes its own containers and never
    # those of another moto on the same Docker engine (moto_batch.remove_containers).
    kwargs["labels"] = {**(kwargs.get("labels") or {}), SERVER_LABEL: str(os.getpid())}
    container = _container_run(self, *args, **kwargs)
    job = getattr(_running_job, "job", None)
    if job is not None and isinstance(job._log_backend, LiveLogs):
        job._log_backend.started(container)
    return container


batch_models.Job.run = _run_job  # type: ignore[method-assign]
ContainerCollection.run = _run_container  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
