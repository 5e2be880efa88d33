"""The `batchgate` command: flags to requests against a scripted server (in-process), and the
installed command end to end against a real local service."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import RunningService, wait_until

from batchgate.client.cli import main
from batchgate.errors import InsufficientSystemResources
from batchgate.v1 import batchgate_pb2 as pb
from scripted_service import ScriptedServicer, start_server

BATCHGATE = Path(sys.executable).with_name("batchgate")


@pytest.fixture
def scripted() -> Iterator[tuple[ScriptedServicer, str]]:
    servicer = ScriptedServicer()
    server, address = start_server(servicer)
    yield servicer, address
    server.stop(None)


# --- against a scripted server ---------------------------------------------------------------


def test_submit_flags_become_the_job_spec(scripted: tuple[ScriptedServicer, str], capsys: pytest.CaptureFixture[str]) -> None:
    servicer, address = scripted
    servicer.answers["IssueJob"] = pb.IssueJobResponse(job_id=7)
    status = main([
        "--address", address, "submit",
        "--cores", "0.5", "--memory", "2G", "--disk", "1G", "--gpus", "1:gpu:nvidia-tesla-k80", "--wall-time", "1h",
        "--env", "A=1", "--env", "B=x=y", "--name", "n", "--cwd", "/tmp", "--stdout", "o", "--stderr", "e",
        "--job-set", "S", "--backend", "local", "--request-key", "K", "--preemptible",
        "--", "echo", "a b", "$HOME",
    ])  # fmt: skip
    assert (status, capsys.readouterr().out) == (0, "7\n")
    expected = pb.JobSpec(
        command="echo 'a b' '$HOME'",
        name="n",
        cores=0.5,
        memory=2 * 1024**3,
        disk=1024**3,
        accelerators=[pb.Accelerator(count=1, kind="gpu", model="nvidia-tesla-k80")],
        preemptible=True,
        wall_time_seconds=3600.0,
        environment={"A": "1", "B": "x=y"},
        working_directory="/tmp",
        stdout_path="o",
        stderr_path="e",
        job_set="S",
        request_key="K",
        backend="local",
    )
    assert servicer.requests["IssueJob"][0].spec == expected


def test_one_word_is_taken_as_a_shell_string(scripted: tuple[ScriptedServicer, str]) -> None:
    servicer, address = scripted
    servicer.answers["IssueJob"] = pb.IssueJobResponse(job_id=1)
    assert main(["--address", address, "submit", "--", "echo $HOME | wc -c"]) == 0
    assert servicer.requests["IssueJob"][0].spec.command == "echo $HOME | wc -c"


def test_count_issues_copies_in_one_call_each_with_its_own_key(
    scripted: tuple[ScriptedServicer, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = scripted
    servicer.answers["IssueJobs"] = pb.IssueJobsResponse(job_ids=[4, 5, 6])
    assert main(["--address", address, "submit", "--count", "3", "--request-key", "K", "--", "true"]) == 0
    assert capsys.readouterr().out.split() == ["4", "5", "6"]
    (request,) = servicer.requests["IssueJobs"]
    assert [spec.request_key for spec in request.specs] == ["K-0", "K-1", "K-2"]
    assert {spec.command for spec in request.specs} == {"true"}


def test_watch_prints_one_line_an_update_and_a_tally(
    scripted: tuple[ScriptedServicer, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = scripted
    servicer.log.append(10)
    servicer.log.append(11, pb.EXIT_REASON_FINISHED, exit_status=3)
    servicer.log.append(12, pb.EXIT_REASON_MEMLIMIT, exit_status=137)
    assert main(["--address", address, "watch", "--after", "1", "--count", "2", "--job-set", "S"]) == 0
    out, err = capsys.readouterr()
    assert [line.split("\t")[:4] for line in out.splitlines()] == [["2", "11", "FINISHED", "3"], ["3", "12", "MEMLIMIT", "137"]]
    assert "0 succeeded, 2 failed" in err
    assert servicer.requests["GetUpdatedJob"][0] == pb.GetUpdatedJobRequest(after_sequence=1, job_set="S")


def test_json_is_one_object_a_line_with_numbers_as_numbers(
    scripted: tuple[ScriptedServicer, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = scripted
    servicer.answers["ListRunningJobs"] = pb.ListRunningJobsResponse(seconds_running={3: 1.5, 8: 0.25})
    assert main(["--address", address, "--json", "ls", "--running"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line) == {"seconds_running": {"3": 1.5, "8": 0.25}}


def test_a_refusal_is_one_line_on_stderr(scripted: tuple[ScriptedServicer, str], capsys: pytest.CaptureFixture[str]) -> None:
    servicer, address = scripted
    refusal = InsufficientSystemResources("memory", 2.0**40, 2.0**31, "local")
    servicer.answers["IssueJob"] = refusal
    assert main(["--address", address, "submit", "--memory", "1T", "--", "true"]) == 1
    assert capsys.readouterr() == ("", f"batchgate: error: {refusal.message}\n")


# --- the installed command against a real local service ----------------------------------------


def batchgate(service: RunningService, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BATCHGATE), "--address", service.address, *argv], capture_output=True, text=True, timeout=120)


def submitted_ids(result: subprocess.CompletedProcess[str]) -> list[int]:
    assert result.returncode == 0, result.stderr
    return [int(line) for line in result.stdout.split()]


def test_submit_then_watch_reports_how_each_job_ended(local_service: RunningService) -> None:
    (failing,) = submitted_ids(batchgate(local_service, "submit", "--job-set", "t", "--", "sh", "-c", "exit 3"))
    succeeding = submitted_ids(batchgate(local_service, "submit", "--job-set", "t", "--count", "2", "--", "true"))
    watched = batchgate(local_service, "watch", "--job-set", "t", "--count", "3")
    assert watched.returncode == 0, watched.stderr
    ended = {int(fields[1]): (fields[2], fields[3]) for fields in (line.split("\t") for line in watched.stdout.splitlines())}
    assert ended == {failing: ("FAILED", "3"), **{job_id: ("FINISHED", "0") for job_id in succeeding}}
    assert "2 succeeded, 1 failed" in watched.stderr


def test_the_words_of_a_command_reach_the_job_intact(local_service: RunningService, tmp_path: Path) -> None:
    words = ["a b", "$HOME", "it's", "*"]
    printf = ["sh", "-c", 'printf "%s|" "$@" > words', "sh", *words]
    submitted_ids(batchgate(local_service, "submit", "--cwd", str(tmp_path), "--", *printf))
    shell_string = 'echo "$GREETING" > greeting'
    submitted_ids(batchgate(local_service, "submit", "--cwd", str(tmp_path), "--env", "GREETING=hello  world", "--", shell_string))
    assert batchgate(local_service, "watch", "--count", "2").returncode == 0
    assert (tmp_path / "words").read_text() == "a b|$HOME|it's|*|"
    assert (tmp_path / "greeting").read_text() == "hello  world\n"


def test_setenv_gives_a_job_set_its_own_variables(local_service: RunningService, tmp_path: Path) -> None:
    assert batchgate(local_service, "setenv", "--job-set", "a", "COLOUR=red").returncode == 0
    assert batchgate(local_service, "setenv", "COLOUR=grey").returncode == 0
    report = 'printf %s "$COLOUR" > colour-'
    for job_set in ("a", "b"):
        submitted_ids(batchgate(local_service, "submit", "--cwd", str(tmp_path), "--job-set", job_set, "--", report + job_set))
    assert batchgate(local_service, "watch", "--count", "2").returncode == 0
    assert (tmp_path / "colour-a").read_text() == "red"
    assert (tmp_path / "colour-b").read_text() == "grey"

    assert batchgate(local_service, "setenv", "--job-set", "a", "COLOUR").returncode == 0  # unset: a gets grey
    submitted_ids(batchgate(local_service, "submit", "--cwd", str(tmp_path), "--job-set", "a", "--", report + "a"))
    assert batchgate(local_service, "watch", "--after", "2", "--count", "1").returncode == 0
    assert (tmp_path / "colour-a").read_text() == "grey"


def test_kill_ends_a_running_job(local_service: RunningService) -> None:
    (job_id,) = submitted_ids(batchgate(local_service, "submit", "--", "sleep", "600"))

    def running() -> list[str]:
        return [line.split("\t")[0] for line in batchgate(local_service, "ls", "--running").stdout.splitlines()]

    wait_until(lambda: str(job_id) in running(), message=f"job {job_id} to run")
    assert batchgate(local_service, "kill", str(job_id)).returncode == 0
    assert str(job_id) not in batchgate(local_service, "ls").stdout.split()


def test_a_bad_size_is_one_clear_line_and_nothing_is_issued(local_service: RunningService) -> None:
    result = batchgate(local_service, "submit", "--memory", "2Q", "--", "true")
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["batchgate: error: memory: not a size: '2Q' (try 512M, 2G, 1.5GiB)"]
    assert batchgate(local_service, "ls").stdout == ""


def test_a_job_too_big_for_the_service_is_refused_in_one_line(local_service: RunningService) -> None:
    result = batchgate(local_service, "submit", "--memory", "1T", "--", "true")
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("batchgate: error: ") and "1 TiB" in line and "2 GiB" in line


def test_check_answers_in_its_exit_status(local_service: RunningService) -> None:
    assert batchgate(local_service, "check", "--memory", "1G", "--", "true").returncode == 0
    refused = batchgate(local_service, "check", "--memory", "1T", "--", "true")
    assert refused.returncode == 1
    assert refused.stdout.startswith("refused\n")


def test_caps_report_the_services_limits(local_service: RunningService) -> None:
    result = batchgate(local_service, "--json", "caps")
    assert result.returncode == 0, result.stderr
    capabilities = json.loads(result.stdout)
    assert (capabilities["backend"], capabilities["max_cores"], capabilities["max_memory"]) == ("local", 2.0, 2 * 1024**3)


def test_no_service_at_the_address_is_one_line_naming_it(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    result = subprocess.run([str(BATCHGATE), "--address", address, "--timeout", "1", "ls"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert address in line
