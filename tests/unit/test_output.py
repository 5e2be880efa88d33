"""The kit's upkeep of job output files (size cap, retention), the stderr tail a failed job's
update quotes, and the Driver default for a backend that keeps no output."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from batchgate.driver import Driver, Job, Limits, SubmittedJob
from batchgate.errors import NoOutput
from batchgate.output import STDERR_TAIL_BYTES, STDERR_TAIL_LINES, OutputFiles, OutputSettings, stderr_tail, with_stderr_tail
from batchgate.v1 import batchgate_pb2 as pb

DAY = 86400.0


def job(job_id: int, **fields: str) -> Job:
    return Job(job_id=job_id, command="true", name="", cores=1, memory=1, disk=1, **fields)  # type: ignore[arg-type]


def files(tmp_path: Path, live: set[int], *, max_bytes: int = 10, retention: float = DAY) -> OutputFiles:
    return OutputFiles(OutputSettings(tmp_path / "output", max_bytes, retention), "instance", lambda job_id: job_id in live)


def write(path: str, data: bytes, *, age: float = 0.0) -> None:
    Path(path).write_bytes(data)
    moment = Path(path).stat().st_mtime - age
    os.utime(path, (moment, moment))


def test_jobs_that_name_no_file_get_the_kits_and_named_files_are_kept(tmp_path: Path) -> None:
    keeper = files(tmp_path, set())
    placed = keeper.place(job(7))
    assert placed.stdout_path == str(tmp_path / "output" / "instance" / "7.stdout")
    assert placed.stderr_path == str(tmp_path / "output" / "instance" / "7.stderr")
    own = keeper.place(job(8, stdout_path="mine.txt"))
    assert (own.stdout_path, own.stderr_path) == ("mine.txt", str(tmp_path / "output" / "instance" / "8.stderr"))


def test_the_sweep_caps_ended_jobs_keeping_the_end_and_expires_old_ones(tmp_path: Path) -> None:
    keeper = files(tmp_path, live={3}, max_bytes=10)
    ended, running, old = keeper.place(job(1)), keeper.place(job(3)), keeper.place(job(2))
    write(ended.stdout_path, b"0123456789abcdef", age=60)
    write(running.stdout_path, b"0123456789abcdef")
    write(old.stdout_path, b"old", age=2 * DAY)
    before = os.stat(ended.stdout_path).st_mtime

    keeper.sweep(time.time())

    assert Path(ended.stdout_path).read_bytes() == b"6789abcdef"  # its last 10 bytes
    assert os.stat(ended.stdout_path).st_mtime == before  # retention still counts from the job's end
    assert Path(running.stdout_path).read_bytes() == b"0123456789abcdef"  # a live job's are left alone
    assert not Path(old.stdout_path).exists()
    # A file that is not the kit's is never touched.
    stranger = tmp_path / "output" / "instance" / "notes.txt"
    write(str(stranger), b"x" * 100, age=3 * DAY)
    keeper.sweep(time.time() + 3 * DAY)
    assert stranger.read_bytes() == b"x" * 100 and not Path(ended.stdout_path).exists()


def test_the_stderr_tail_is_the_last_lines_and_bounded(tmp_path: Path) -> None:
    path = tmp_path / "err"
    path.write_text("".join(f"line {number}\n" for number in range(100)))
    tail = stderr_tail(str(path))
    assert tail.splitlines() == [f"line {number}" for number in range(100 - STDERR_TAIL_LINES, 100)]
    path.write_bytes(b"x" * 10_000 + b"\nlast words\n")
    long_tail = stderr_tail(str(path))
    assert long_tail.endswith("last words") and len(long_tail) <= STDERR_TAIL_BYTES
    assert stderr_tail(str(tmp_path / "missing")) == ""
    assert with_stderr_tail("exited 3", str(path)).startswith("exited 3; stderr ends:\n")
    assert with_stderr_tail("exited 3", str(tmp_path / "missing")) == "exited 3"


class SilentDriver(Driver):
    kind = "silent"

    def limits(self) -> Limits:
        return Limits()

    def submit(self, jobs: Sequence[Job]) -> Sequence[str]:
        return [""] * len(jobs)

    def kill(self, jobs: Sequence[SubmittedJob]) -> None: ...

    def adopt(self, jobs: Sequence[SubmittedJob]) -> None: ...


def test_a_driver_with_no_output_hook_says_its_backend_keeps_none() -> None:
    driver = SilentDriver()
    driver.name = "batch-1"
    assert not driver.output_files
    with pytest.raises(NoOutput) as refused:
        driver.output(SubmittedJob(job(5), "x"), pb.OUTPUT_STREAM_STDOUT, 0, False)
    assert refused.value.message == "job 5: backend 'batch-1' (silent) keeps no job output"
