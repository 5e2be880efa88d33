"""How the local backend starts a job's process (services/local/spawn.py), checked on real processes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from batchgate.services.local.spawn import encode_environment, spawn


def run(argv: list[str], environment: dict[str, str] | None = None, **paths: str) -> int:
    """Spawn, wait, and return the exit code."""
    pid = spawn(argv, encode_environment(environment or {"PATH": os.environ["PATH"]}).values(), **paths)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_the_job_leads_its_own_session_and_reads_dev_null(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(["/bin/sh", "-c", "readlink /proc/$$/fd/0; cat /proc/$$/stat"], stdout=str(out)) == 0
    stdin, stat = out.read_text().splitlines()
    assert stdin == os.devnull
    pid, group, session = (int(field) for field in (stat.split()[0], *stat.rsplit(")", 1)[1].split()[2:4]))
    assert session == group == pid  # a session and process group of its own


def test_signals_python_ignores_are_back_at_their_defaults(tmp_path: Path) -> None:
    # The test process ignores SIGPIPE (Python does at startup); a job must not inherit that,
    # or `yes | head` style pipelines in jobs never end.
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN
    out = tmp_path / "status"
    assert run(["/bin/cat", "/proc/self/status"], stdout=str(out)) == 0
    ignored = int(next(line for line in out.read_text().splitlines() if line.startswith("SigIgn:")).split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))
    assert not ignored & (1 << (signal.SIGXFSZ - 1))


def test_environment_is_exactly_what_is_given(tmp_path: Path) -> None:
    out = tmp_path / "env"
    assert run(["/usr/bin/env"], {"ONLY": "this one", "ÜNICODE": "välue"}, stdout=str(out)) == 0
    assert sorted(out.read_text().splitlines()) == ["ONLY=this one", "ÜNICODE=välue"]


def test_outputs_are_opened_before_the_directory_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(tmp_path)  # relative output paths are the service's, not the job's
    assert run(["/bin/sh", "-c", "pwd; echo to-stderr >&2"], stdout="both.txt", stderr="both.txt", cwd=str(workdir)) == 0
    assert (tmp_path / "both.txt").read_text() == f"{workdir}\nto-stderr\n"
    assert not (workdir / "both.txt").exists()


def test_a_missing_working_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as raised:
        spawn(["/bin/true"], [], cwd=str(tmp_path / "nowhere"))
    assert raised.value.filename == str(tmp_path / "nowhere")


def test_an_unwritable_output_is_named(tmp_path: Path) -> None:
    target = tmp_path / "no-such-directory" / "out.txt"
    with pytest.raises(FileNotFoundError) as raised:
        spawn(["/bin/true"], [], stdout=str(target))
    assert raised.value.filename == str(target)


def test_a_nul_byte_is_refused_rather_than_cutting_the_string_short() -> None:
    with pytest.raises(ValueError):
        spawn(["/bin/sh", "-c", "echo safe\0; rm -rf /tmp/x"], [])
    with pytest.raises(ValueError):
        encode_environment({"NAME": "value\0hidden"})
