"""`batchgate logs` and `batchgate submit --wait`: the installed command against a real local service."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from harness import RunningService, wait_until

BATCHGATE = Path(sys.executable).with_name("batchgate")


def batchgate(service: RunningService, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BATCHGATE), "--address", service.address, *argv], capture_output=True, text=True, timeout=120)


def started(service: RunningService, *argv: str) -> subprocess.Popen[str]:
    command = [str(BATCHGATE), "--address", service.address, *argv]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def submit(service: RunningService, command: str) -> int:
    result = batchgate(service, "submit", "--", command)
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def test_submit_wait_shows_the_output_and_exits_as_the_job_did(local_service: RunningService) -> None:
    result = batchgate(local_service, "submit", "--wait", "--", "echo hello; echo careful >&2")
    assert (result.returncode, result.stdout) == (0, "hello\n"), result.stderr
    assert "careful\n" in result.stderr

    failed = batchgate(local_service, "submit", "--wait", "--", "echo partial; echo 'no input.csv' >&2; exit 3")
    assert (failed.returncode, failed.stdout) == (3, "partial\n")
    assert "no input.csv" in failed.stderr and "FAILED with exit status 3" in failed.stderr

    # A death by signal N exits 128+N, as a shell reports it.
    killed = batchgate(local_service, "submit", "--wait", "--", "kill -9 $$")
    assert killed.returncode == 128 + 9, killed.stderr


def test_submit_wait_streams_while_the_job_runs(local_service: RunningService, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    waiting = started(local_service, "submit", "--wait", "--", f"echo first; while [ ! -e {gate} ]; do sleep 0.1; done; echo second")
    assert waiting.stdout is not None
    assert waiting.stdout.readline() == "first\n"  # before the job has ended: it waits for the gate
    assert waiting.poll() is None
    gate.touch()
    stdout, stderr = waiting.communicate(timeout=60)
    assert (waiting.returncode, stdout) == (0, "second\n"), stderr


def test_ctrl_c_on_submit_wait_kills_the_job(local_service: RunningService) -> None:
    waiting = started(local_service, "submit", "--wait", "--", "echo up; sleep 600")
    assert waiting.stdout is not None and waiting.stdout.readline() == "up\n"
    waiting.send_signal(signal.SIGINT)
    _, stderr = waiting.communicate(timeout=60)
    assert waiting.returncode == 130 and "killed" in stderr
    assert batchgate(local_service, "ls").stdout == ""


def test_submit_wait_is_for_one_job(local_service: RunningService) -> None:
    refused = batchgate(local_service, "submit", "--wait", "--count", "2", "--", "true")
    assert refused.returncode == 1 and "--wait" in refused.stderr
    assert batchgate(local_service, "ls").stdout == ""


def test_logs_prints_a_jobs_stdout_stderr_and_tail(local_service: RunningService) -> None:
    job_id = submit(local_service, "printf 'a\\nb\\nc\\n'; echo oops >&2")
    assert batchgate(local_service, "watch", "--count", "1").returncode == 0
    assert batchgate(local_service, "logs", str(job_id)).stdout == "a\nb\nc\n"
    assert batchgate(local_service, "logs", "--stderr", str(job_id)).stdout == "oops\n"
    assert batchgate(local_service, "logs", "--tail", "4", str(job_id)).stdout == "b\nc\n"


def test_logs_follow_prints_until_the_job_ends(local_service: RunningService, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    job_id = submit(local_service, f"echo one; while [ ! -e {gate} ]; do sleep 0.1; done; echo two")
    following = started(local_service, "logs", "--follow", str(job_id))
    assert following.stdout is not None and following.stdout.readline() == "one\n"
    assert following.poll() is None
    gate.touch()
    stdout, stderr = following.communicate(timeout=60)
    assert (following.returncode, stdout) == (0, "two\n"), stderr


def test_logs_of_an_unknown_job_or_one_without_output_say_why(local_service: RunningService, tmp_path: Path) -> None:
    unknown = batchgate(local_service, "logs", "424242")
    assert unknown.returncode == 1 and "job 424242 is not known" in unknown.stderr
    missing = tmp_path / "gone" / "out"
    result = batchgate(local_service, "submit", "--stdout", str(missing), "--", "echo lost")
    job_id = int(result.stdout)
    wait_until(lambda: batchgate(local_service, "ls").stdout == "", message="the job to end")
    without = batchgate(local_service, "logs", str(job_id))
    assert without.returncode == 1 and without.stdout == ""
    assert f"job {job_id}:" in without.stderr and str(missing) in without.stderr
