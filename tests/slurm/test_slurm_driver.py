"""The Slurm driver against a real single-node Slurm: outcomes, kills, hostile input, restarts,
outages, scheduling status, and the one-query-per-cycle promise."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from slurm_cluster import DriverFactory, make_job, squeue, start_controller, stop_controller

from batchgate.driver import SubmittedJob
from batchgate.endings import ExitReason
from batchgate.errors import InvalidArgument
from batchgate.hpc import CountingRunner, run_command
from batchgate.v1 import batchgate_pb2 as pb

MIB = 1024**2


def test_exit_codes_and_signal_deaths_are_reported_as_the_shell_would(attach: DriverFactory) -> None:
    slurm = attach()
    jobs = [
        make_job(1, "sleep 1.5"),
        make_job(2, "exit 3"),
        make_job(3, "kill -TERM $$"),
        make_job(4, "kill -KILL $$"),
    ]
    slurm.submit(*jobs)
    finished, failed, terminated, killed = (slurm.events.outcome(job.job_id) for job in jobs)
    assert (finished.exit_reason, finished.exit_status) == (ExitReason.FINISHED, 0)
    assert finished.wall_time is not None and finished.wall_time >= 1
    assert (failed.exit_reason, failed.exit_status) == (ExitReason.FAILED, 3)
    assert (terminated.exit_reason, terminated.exit_status) == (ExitReason.FAILED, 128 + 15)
    assert (killed.exit_reason, killed.exit_status) == (ExitReason.FAILED, 128 + 9)
    assert "FAILED" in failed.message


def test_a_job_over_its_memory_is_memlimit(attach: DriverFactory) -> None:
    slurm = attach()
    hog = f"{sys.executable} -c 'import time; block = bytearray(400 * 1024 * 1024); time.sleep(5)'"
    (submitted,) = slurm.submit(make_job(1, hog, memory=50 * MIB))
    outcome = slurm.events.outcome(1)
    assert outcome.exit_reason is ExitReason.MEMLIMIT
    assert outcome.exit_status != 0
    assert "OUT_OF_MEMORY" in outcome.message and submitted.backing_id in outcome.message


def test_a_job_cancelled_by_someone_else_is_killed(attach: DriverFactory) -> None:
    slurm = attach()
    (submitted,) = slurm.submit(make_job(1, "sleep 300"))
    slurm.events.wait_started(1)
    subprocess.run(["scancel", submitted.backing_id], check=True)  # an admin's, not KillJobs
    outcome = slurm.events.outcome(1)
    assert outcome.exit_reason is ExitReason.KILLED
    assert outcome.exit_status != 0
    assert "CANCELLED" in outcome.message


def test_hostile_names_values_and_paths_arrive_byte_for_byte_and_never_run(attach: DriverFactory, tmp_path: Path) -> None:
    slurm = attach()
    canary = tmp_path / "canary"
    environment = {
        "SPACES": "a b  c",
        "QUOTES": 'it\'s "quoted" \\ back',
        "NEWLINES": "one\ntwo\n#SBATCH --mem=999999\n",
        "SUBSHELL": f"$(touch {canary}) `touch {canary}`",
        "COMMAS": "a,b,c=d,ALL",
        "GLOB": "* ? [a-z] ~",
        "UNICODE": "größe ✓",
    }
    workdir = tmp_path / "work dir 'with' quotes"
    workdir.mkdir()
    stdout = tmp_path / "out %j 'literal'.json"
    names = json.dumps(sorted(environment))
    report = f"{sys.executable} -c 'import json, os; print(json.dumps({{n: os.environ.get(n) for n in {names}}})); print(os.getcwd())'"
    job = make_job(
        1, report, name="name; $(touch canary) 'q' %j", environment=environment, working_directory=str(workdir), stdout_path=str(stdout)
    )
    slurm.submit(job)

    assert slurm.events.outcome(1).exit_reason is ExitReason.FINISHED
    seen, cwd = stdout.read_text().splitlines()
    assert json.loads(seen) == environment
    assert cwd == str(workdir)
    assert not canary.exists() and not (workdir / "canary").exists()


def test_a_variable_the_shell_cannot_pass_on_is_refused_naming_it(attach: DriverFactory) -> None:
    with pytest.raises(InvalidArgument) as caught:
        attach().driver.validate(make_job(1, "true", environment={"GOOD": "1", "not a name": "x"}))
    assert caught.value.field == "environment['not a name']"


def test_kill_of_a_pending_and_a_running_job_returns_once_they_are_dead(attach: DriverFactory) -> None:
    slurm = attach()
    marker = f"batchgate-kill-{uuid.uuid4().hex}"
    pending, running = slurm.submit(
        make_job(1, "true", options=pb.SlurmOptions(extra_args=["--begin=now+3600"])),
        make_job(2, f"sleep 300; : {marker}"),
    )
    slurm.events.wait_started(2)

    slurm.driver.kill([pending, running])

    states = dict(line.split("|")[:2] for line in squeue("--states=all", "--Format=JobID:|,State:|").splitlines())
    assert states[pending.backing_id] == "CANCELLED" and states[running.backing_id] == "CANCELLED"
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1, "the job's process outlived the kill"
    time.sleep(5 * slurm.driver.poll_interval)
    assert not slurm.events.ends, "a killed job was reported"


def test_extra_arguments_that_fight_the_job_are_refused_naming_the_field(attach: DriverFactory) -> None:
    slurm = attach()
    fine = ["--begin=now", "--nodelist=localhost", "--exclusive", "--constraint=x", "-w", "localhost", "--export=NONE"]
    slurm.driver.validate(make_job(1, "true", options=pb.SlurmOptions(extra_args=fine)))
    for refused in [
        "--mem=4G",
        "--mem-per-cpu=1G",
        "--cpus-per-task=4",
        "-c4",
        "-n",
        "--ntasks=2",
        "--time=5",
        "-t",
        "--ti=5",
        "--gres=gpu:1",
        "--wrap=true",
        "--comment=x",
    ]:
        with pytest.raises(InvalidArgument) as caught:
            slurm.driver.validate(make_job(1, "true", options=pb.SlurmOptions(extra_args=["--begin=now", refused])))
        assert caught.value.field == "slurm.extra_args[1]", refused


def test_sbatch_refusing_a_job_fails_it_at_once_quoting_slurm(attach: DriverFactory) -> None:
    slurm = attach()
    backing_ids = slurm.driver.submit([make_job(1, "true", options=pb.SlurmOptions(partition="no-such-partition"))])
    assert list(backing_ids) == [""]
    outcome = slurm.events.outcome(1, timeout=5)
    assert outcome.exit_reason is ExitReason.ERROR
    assert "invalid partition" in outcome.message.lower()


def test_a_restarted_driver_adopts_its_jobs_and_reports_each_exactly_once(attach: DriverFactory) -> None:
    first = attach()
    submitted = first.submit(make_job(1, "sleep 2"), make_job(2, "sleep 6"), make_job(3, "exit 5"))
    first.events.wait_started(2)
    first.driver.close()
    reported_before = set(first.events.ended_ids())
    time.sleep(3)  # job 1 ends while no driver watches

    second = attach(first.instance_id)
    second.driver.adopt(
        [
            SubmittedJob(s.job, s.backing_id, started_at=first.events.starts.get(s.job.job_id, (None, None))[1])
            for s in submitted
            if s.job.job_id not in reported_before
        ]
    )
    for job_id in {1, 2, 3} - reported_before:
        second.events.outcome(job_id)
    time.sleep(5 * second.driver.poll_interval)
    assert first.events.ended_ids() + second.events.ended_ids() == Counter({1: 1, 2: 1, 3: 1})
    outcomes = {job_id: outcome for job_id, outcome in first.events.ends + second.events.ends}
    assert [outcomes[job_id].exit_reason for job_id in (1, 2, 3)] == [ExitReason.FINISHED, ExitReason.FINISHED, ExitReason.FAILED]
    assert outcomes[3].exit_status == 5


def test_a_job_submitted_but_not_recorded_before_a_restart_is_not_submitted_twice(attach: DriverFactory) -> None:
    job = make_job(1, "sleep 1")
    first = attach()
    (submitted,) = first.submit(job)
    first.driver.close()

    counting = CountingRunner()
    second = attach(first.instance_id, runner=counting)
    assert list(second.driver.submit([job])) == [submitted.backing_id]
    assert "sbatch" not in counting.commands
    assert second.events.outcome(1).exit_reason is ExitReason.FINISHED


def test_a_submission_whose_answer_is_lost_is_not_submitted_again(attach: DriverFactory) -> None:
    # sbatch runs for real, but its answer "arrives" too late: Slurm has the job, the driver
    # saw a timeout. A retry would run the job twice; the driver finds it by its tag instead.
    answers_lost = 1

    def late_answers(argv: Sequence[str], stdin: str | None, timeout: float) -> str:
        nonlocal answers_lost
        output = run_command(argv, stdin, timeout)
        if argv[0] == "sbatch" and answers_lost:
            answers_lost -= 1
            raise subprocess.TimeoutExpired(list(argv), timeout)
        return output

    counting = CountingRunner(late_answers)
    slurm = attach(runner=counting)
    (submitted,) = slurm.submit(make_job(1, "true"))
    assert counting.commands["sbatch"] == 1
    assert slurm.events.outcome(1).exit_reason is ExitReason.FINISHED
    jobs = (line.partition("|") for line in squeue("--states=all", "--Format=JobID:|,Comment:").splitlines())
    assert [job_id.strip() for job_id, _, tag in jobs if tag.strip() == slurm.driver.tag(1)] == [submitted.backing_id]


def test_controller_outages_are_ridden_out_or_fail_jobs_quoting_slurm_but_never_at_a_stop(attach: DriverFactory) -> None:
    # An outage shorter than the command timeout: the running job is reported once, as it ended.
    patient = attach(command_timeout=40.0)
    patient.submit(make_job(1, "sleep 6"))
    patient.events.wait_started(1)
    stop_controller()
    try:
        time.sleep(3)
    finally:
        start_controller()
    assert patient.events.outcome(1, timeout=60).exit_reason is ExitReason.FINISHED

    # A lasting one: a submission fails, quoting Slurm. A driver stopped meanwhile fails nothing;
    # its job is adopted by the next run once Slurm is back.
    hasty = attach(command_timeout=10.0)
    hasty.submit(make_job(2, "true"))
    hasty.events.outcome(2)
    stopping = attach(command_timeout=60.0)
    (survivor,) = stopping.submit(make_job(5, "sleep 10"))
    stopping.events.wait_started(5)
    stop_controller()
    try:
        assert list(hasty.driver.submit([make_job(3, "true")])) == [""]
        outcome = hasty.events.outcome(3, timeout=1)
        stopping.driver.close()
    finally:
        start_controller()
    assert outcome.exit_reason is ExitReason.ERROR
    assert "sbatch kept failing" in outcome.message and "Unable to contact slurm controller" in outcome.message
    assert not stopping.events.ends

    hasty.submit(make_job(4, "true"))
    assert hasty.events.outcome(4).exit_reason is ExitReason.FINISHED
    restarted = attach(stopping.instance_id)
    restarted.driver.adopt([SubmittedJob(survivor.job, survivor.backing_id, started_at=stopping.events.starts[5][1])])
    assert restarted.events.outcome(5).exit_reason is ExitReason.FINISHED
    assert patient.events.ended_ids() == Counter({1: 1})


def test_scheduling_status_names_pending_reasons_and_sees_a_deadlock(attach: DriverFactory) -> None:
    # Partition "short" allows one minute: a ten-minute job there can never start.
    stuck = attach()
    stuck.submit(make_job(1, "true", wall_time=600.0, options=pb.SlurmOptions(partition="short")))
    deadline = time.monotonic() + 10
    while not (status := stuck.driver.scheduling_status()).deadlocked:
        assert time.monotonic() < deadline, f"no deadlock seen: {status}"
        time.sleep(0.1)
    assert "Partition" in status.message  # PartitionConfig, then PartitionTimeLimit

    waiting = attach()
    waiting.submit(make_job(1, "true", options=pb.SlurmOptions(extra_args=["--begin=now+3600"])))
    deadline = time.monotonic() + 10
    while "BeginTime" not in (status := waiting.driver.scheduling_status()).message:
        assert time.monotonic() < deadline, f"no pending reason seen: {status}"
        time.sleep(0.1)
    assert not status.deadlocked


def test_one_queue_query_per_poll_cycle_whatever_the_number_of_jobs(attach: DriverFactory) -> None:
    counting = CountingRunner()
    slurm = attach(runner=counting)
    slurm.submit(*[make_job(job_id, "true", options=pb.SlurmOptions(extra_args=["--hold"])) for job_id in range(1, 41)])
    counting.commands.clear()
    cycles_before = slurm.driver.poll_cycles
    time.sleep(2)
    slurm.driver.close()
    cycles = slurm.driver.poll_cycles - cycles_before
    assert cycles >= 5
    # One squeue a cycle; the first may still use the answer the submission asked for just before.
    assert set(counting.commands) == {"squeue"} and cycles - 1 <= counting.commands["squeue"] <= cycles


def test_limits_nodes_and_node_types_come_from_sinfo(attach: DriverFactory) -> None:
    node = dict(
        item.split("=", 1)
        for item in subprocess.run(
            ["scontrol", "--oneliner", "show", "node", "localhost"], capture_output=True, text=True, check=True
        ).stdout.split()
        if "=" in item
    )
    cores, memory, disk = int(node["CPUTot"]), int(node["RealMemory"]) * MIB, int(node["TmpDisk"]) * MIB

    limits = attach().driver.limits()
    assert (limits.max_cores, limits.max_memory, limits.max_disk, limits.max_wall_time) == (cores, memory, disk, None)
    assert attach(partition="short").driver.limits().max_wall_time == 60

    (listed,) = attach().driver.nodes()
    assert (listed.name, listed.cores, listed.memory) == ("localhost", cores, memory)
    (shape,) = attach().driver.node_types()
    assert (shape.cores, shape.memory, shape.disk, shape.count) == (cores, memory, disk, 1)
