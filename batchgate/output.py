"""Job output: where a job's stdout and stderr go when it names no file, how much of them is kept
and for how long, and reading them back for GetJobOutput (a tail, or following them while the job
runs) and for a failed job's update (the last lines of its stderr).

Two kinds of driver (batchgate/driver.py): one whose scheduler writes the job's output to files
this service can read (`Driver.output_files`: local, Slurm, LSF with a shared directory), which
the kit names, caps, expires and reads itself; and one whose output lives elsewhere (pod logs,
CloudWatch, a gateway's backend), read through `Driver.output`. Any other keeps none, and
GetJobOutput answers FAILED_PRECONDITION saying so, never an empty success.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from batchgate import units
from batchgate.config import add_option
from batchgate.driver import Driver, Job, OutputChunks, SubmittedJob
from batchgate.errors import BatchgateError, InvalidArgument, NoOutput
from batchgate.v1 import batchgate_pb2 as pb

if TYPE_CHECKING:
    from batchgate.service import BatchService

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024  # one GetJobOutputResponse at most
FOLLOW_POLL_SECONDS = 0.2  # how often a followed file is looked at again when it has nothing new
STDERR_TAIL_BYTES = 2048  # of a failed job's stderr, quoted in its update's message
STDERR_TAIL_LINES = 10
STDERR_TAIL_HEADING = "stderr ends:"
# A feature (GetCapabilities) of a backend that keeps a job's stdout and stderr as one log
# (Kubernetes): both streams answer with all of it, so a client prints it once.
ONE_LOG_FEATURE = "output:one-log"
SWEEP_SECONDS = 60.0
DRIVER_READERS = 256  # threads reading drivers' output at once (each followed job holds one)
STREAMS = {pb.OUTPUT_STREAM_UNSPECIFIED: "stdout", pb.OUTPUT_STREAM_STDOUT: "stdout", pb.OUTPUT_STREAM_STDERR: "stderr"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("job output (files of jobs that name none; for backends whose jobs write files)")
    add_option(
        group,
        "--output-dir",
        default="",
        help="where jobs' stdout/stderr files go (default: output/ in --state-dir); on a cluster, "
        "a directory this service and the compute nodes share",
    )
    add_option(
        group,
        "--output-max-bytes",
        default=16 * 1024**2,
        type=units.parse_bytes,
        help="bytes of each stream kept once its job has ended (the end is kept), e.g. 16M; "
        "0 keeps nothing: a job that names no file writes nowhere",
    )
    add_option(
        group,
        "--output-retention",
        default=7 * 86400.0,
        type=units.parse_duration,
        help="how long an ended job's output files are kept after their last write, e.g. 7d",
    )


@dataclass(frozen=True)
class OutputSettings:
    directory: Path
    max_bytes: int
    retention: float  # seconds

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> OutputSettings:
        directory = Path(args.output_dir) if args.output_dir else Path(args.state_dir) / "output"
        return cls(directory, args.output_max_bytes, args.output_retention)


class OutputFiles:
    """The files the kit names for jobs that name none, under the settings' directory (in a
    folder of this service's instance id, so services sharing a directory never collide), and
    their upkeep: a sweeper cuts each ended job's files to --output-max-bytes, keeping the end,
    and removes them --output-retention after their last write."""

    def __init__(self, settings: OutputSettings, instance_id: str, is_live: Callable[[int], bool]) -> None:
        self.settings = settings
        # Absolute: a job may run in another directory (sbatch --chdir) and still find it.
        self.directory = (settings.directory / instance_id).absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._prefix = str(self.directory) + os.sep
        self._is_live = is_live
        self._seen: dict[str, tuple[float, int]] = {}  # file name -> (mtime, size) at the last sweep
        self._stopping = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="output-sweeper", daemon=True)

    def place(self, job: Job) -> Job:
        """The job with the kit's files for the streams it names no file for."""
        if job.stdout_path and job.stderr_path:
            return job
        return dataclasses.replace(
            job,
            stdout_path=job.stdout_path or f"{self._prefix}{job.job_id}.stdout",
            stderr_path=job.stderr_path or f"{self._prefix}{job.job_id}.stderr",
        )

    def start(self) -> None:
        self._sweeper.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._sweeper.is_alive():
            self._sweeper.join(timeout=10)

    def _sweep_loop(self) -> None:
        while not self._stopping.wait(min(SWEEP_SECONDS, max(1.0, self.settings.retention / 10))):
            try:
                self.sweep(time.time())
            except OSError:
                log.exception("sweeping job output in %s failed", self.directory)

    def sweep(self, now: float) -> None:
        """Expire and cap the files of ended jobs (a live job's are left alone)."""
        seen: dict[str, tuple[float, int]] = {}
        for entry in os.scandir(self.directory):
            job_id, dot, stream = entry.name.partition(".")
            if not dot or stream not in ("stdout", "stderr") or not job_id.isdigit() or self._is_live(int(job_id)):
                continue
            status = entry.stat()
            if now - status.st_mtime > self.settings.retention:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                continue
            if status.st_size > self.settings.max_bytes and self._seen.get(entry.name) != (status.st_mtime, status.st_size):
                keep_end(entry.path, self.settings.max_bytes)
                status = os.stat(entry.path)
            seen[entry.name] = (status.st_mtime, status.st_size)
        self._seen = seen


def keep_end(path: str, max_bytes: int) -> None:
    """Cut a file to its last `max_bytes`, replacing it whole (a reader never sees half of it).
    The time of its last write stays, so the retention time still counts from the job's end."""
    status = os.stat(path)
    partial = f"{path}.partial"
    with open(path, "rb") as source, open(partial, "wb") as cut:
        source.seek(max(0, status.st_size - max_bytes))
        while chunk := source.read(CHUNK_BYTES):
            cut.write(chunk)
    os.utime(partial, ns=(status.st_atime_ns, status.st_mtime_ns))
    os.replace(partial, path)


def stderr_tail(path: str) -> str:
    """The last lines of a file (at most STDERR_TAIL_LINES and STDERR_TAIL_BYTES), or "" if it
    cannot be read: what a failed job's update quotes of its stderr."""
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            start = max(0, size - STDERR_TAIL_BYTES)
            file.seek(start)
            return last_lines(file.read(STDERR_TAIL_BYTES), cut_short=start > 0)
    except OSError:
        return ""


def last_lines(data: bytes, *, cut_short: bool) -> str:
    """The last STDERR_TAIL_LINES lines of the end of some output (whose first line is dropped
    when `cut_short`: it starts mid-line)."""
    lines = data.decode("utf-8", errors="replace").splitlines()
    if cut_short and lines:
        lines = lines[1:]
    return "\n".join(line for line in lines[-STDERR_TAIL_LINES:]).strip()


def driver_stderr_tail(driver: Driver, job: SubmittedJob) -> str:
    """The last lines of a job's stderr as its driver reads it from the scheduler, or "" if it
    has none (or cannot be read now: the update is not held back for it)."""
    try:
        chunks = driver.output(job, pb.OUTPUT_STREAM_STDERR, STDERR_TAIL_BYTES, False)
        data = b"".join(chunks)
    except Exception as error:  # a quote is a courtesy: no error of the scheduler's may stop the update
        log.debug("no stderr to quote for job %d: %s", job.job.job_id, error)
        return ""
    return last_lines(data[-STDERR_TAIL_BYTES:], cut_short=len(data) >= STDERR_TAIL_BYTES)


def quoting_stderr(message: str, tail: str) -> str:
    """A failed job's update message, ending with the last lines of its stderr if there are any."""
    if not tail:
        return message
    return f"{message}; {STDERR_TAIL_HEADING}\n{tail}" if message else f"{STDERR_TAIL_HEADING}\n{tail}"


def with_stderr_tail(message: str, path: str) -> str:
    """A failed job's update message, quoting the end of its stderr file `path` (if any)."""
    return quoting_stderr(message, stderr_tail(path) if path else "")


def output_tail(service: BatchService, job_id: int, stream: int, max_bytes: int) -> dict[str, str]:
    """The last `max_bytes` of a job's output `stream` as text ({"text": ...}), for a person to
    read (the status page's job page), or why there is none ({"missing": ...}). Blocks."""
    try:
        submitted, _ = service.find_job(job_id)
        if service.driver.output_files:
            with open(service.output_path(submitted.job, stream), "rb") as file:
                file.seek(max(0, file.seek(0, os.SEEK_END) - max_bytes))
                data = file.read(max_bytes)
        else:
            data = b"".join(service.driver.output(submitted, stream, max_bytes, False))
    except BatchgateError as error:
        return {"missing": error.message}
    except OSError as error:
        return {"missing": f"its output cannot be read: {error.strerror}"}
    return {"text": data.decode("utf-8", errors="replace")}


# ---- GetJobOutput ------------------------------------------------------------------------------

_DRIVER_READERS = ThreadPoolExecutor(max_workers=DRIVER_READERS, thread_name_prefix="output-reader")


def check_request(request: pb.GetJobOutputRequest) -> None:
    if request.job_id <= 0:
        raise InvalidArgument("job_id", f"must be a job id (1 or more), not {request.job_id}")
    if request.stream not in STREAMS:
        raise InvalidArgument("stream", f"must be OUTPUT_STREAM_STDOUT or OUTPUT_STREAM_STDERR, not {request.stream}")
    if request.tail_bytes < 0:
        raise InvalidArgument("tail_bytes", f"must be >= 0 (0: all of it), not {request.tail_bytes}")


async def job_output(service: BatchService, request: pb.GetJobOutputRequest, executor: Executor) -> AsyncGenerator[bytes, None]:
    """The chunks GetJobOutput sends (close the generator when done with it). Raises
    BatchgateError: InvalidArgument, JobNotFound, and NoOutput (at once or from the generator)."""
    check_request(request)
    job_id = request.job_id
    submitted, _ = await asyncio.get_running_loop().run_in_executor(executor, service.find_job, job_id)
    if not service.driver.output_files:
        return read_driver(service, submitted, request, executor)
    return read_file(
        service.output_path(submitted.job, request.stream),
        job_id,
        tail_bytes=request.tail_bytes,
        follow=request.follow,
        live=lambda: service.is_live(job_id),
        executor=executor,
    )


async def read_file(
    path: str, job_id: int, *, tail_bytes: int, follow: bool, live: Callable[[], bool], executor: Executor
) -> AsyncGenerator[bytes, None]:
    """A job's output file from its start (or its last `tail_bytes`); with `follow`, until the
    job has ended and the file is drained. Blocking file calls run in `executor`."""
    loop = asyncio.get_running_loop()
    while True:
        was_live = live()  # looked at before the file: a job that has ended has written it all
        try:
            file = await loop.run_in_executor(executor, _open, path)
        except OSError as error:
            raise NoOutput(job_id, f"its output file {path} cannot be read: {error.strerror}") from None
        if file is not None:
            break
        if not was_live:
            raise NoOutput(job_id, f"its output file {path} does not exist (never written, or removed after the retention time)")
        if not follow:
            raise NoOutput(job_id, f"it has not written any output yet ({path} does not exist yet); ask again, or follow it")
        await asyncio.sleep(FOLLOW_POLL_SECONDS)
    try:
        if tail_bytes:
            size = await loop.run_in_executor(executor, file.seek, 0, os.SEEK_END)
            await loop.run_in_executor(executor, file.seek, max(0, size - tail_bytes))
        while True:
            was_live = live()
            data = await loop.run_in_executor(executor, file.read, CHUNK_BYTES)
            if data:
                yield data
            elif not (follow and was_live):
                return
            else:
                await asyncio.sleep(FOLLOW_POLL_SECONDS)
    finally:
        file.close()


def _open(path: str) -> BinaryIO | None:
    try:
        return open(path, "rb")  # noqa: SIM115 - closed by read_file
    except FileNotFoundError:
        return None


async def read_driver(
    service: BatchService, submitted: SubmittedJob, request: pb.GetJobOutputRequest, executor: Executor
) -> AsyncGenerator[bytes, None]:
    """A job's output from a driver that reads it from its scheduler (Driver.output)."""
    loop = asyncio.get_running_loop()
    job_id = submitted.job.job_id
    while not submitted.backing_id:
        if not service.is_live(job_id):
            raise NoOutput(job_id, "it never reached the scheduler, so it has no output")
        if not request.follow:
            raise NoOutput(job_id, "it has not reached the scheduler yet, so it has no output yet; ask again, or follow it")
        await asyncio.sleep(FOLLOW_POLL_SECONDS)
        submitted, _ = await loop.run_in_executor(executor, service.find_job, job_id)
    chunks: OutputChunks = await loop.run_in_executor(
        executor, service.driver.output, submitted, request.stream, request.tail_bytes, request.follow
    )
    iterator: Iterator[bytes] = iter(chunks)
    finished = False
    try:
        # A thread waits in the driver's read for as long as a followed job runs: not one of
        # the unary calls' threads, which followers would otherwise use up.
        while (data := await loop.run_in_executor(_DRIVER_READERS, next, iterator, None)) is not None:
            if data:
                yield data
        finished = True
    finally:
        if not finished:  # the client went away (or an error): stop the driver's read
            chunks.cancel()
