"""The LSF driver against the fake LSF: every exit reason, memory and run limits, hostile input,
kills, outages, lost answers, restarts, units, hosts, and the one-bjobs-per-cycle promise."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from lsf_cluster import LSF_VERSIONS, MIB, Attached, FakeLsf, attach_driver, make_job

from batchgate.driver import AcceleratorRequest, SubmittedJob
from batchgate.endings import ExitReason
from batchgate.errors import InvalidArgument
from batchgate.hpc import CountingRunner
from batchgate.services.lsf.reading import run_limit
from batchgate.v1 import batchgate_pb2 as pb

DriverFactory = Callable[..., Attached]


def test_exit_codes_and_signal_deaths_are_reported_as_the_shell_would(attach_any: DriverFactory) -> None:
    assert_exit_codes_and_signal_deaths(attach_any())


def test_the_bjobs_columns_of_lsf_9_tell_the_same(attach: DriverFactory) -> None:
    assert_exit_codes_and_signal_deaths(attach(bjobs_output="columns"))


def assert_exit_codes_and_signal_deaths(lsf: Attached) -> None:
    jobs = [make_job(1, "sleep 1.5"), make_job(2, "exit 3"), make_job(3, "kill -TERM $$"), make_job(4, "kill -KILL $$")]
    lsf.submit(*jobs)
    finished, failed, terminated, killed = (lsf.events.outcome(job.job_id) for job in jobs)
    assert (finished.exit_reason, finished.exit_status) == (ExitReason.FINISHED, 0)
    assert finished.wall_time is not None and finished.wall_time >= 1
    assert (failed.exit_reason, failed.exit_status) == (ExitReason.FAILED, 3)
    assert (terminated.exit_reason, terminated.exit_status) == (ExitReason.FAILED, 128 + 15)
    assert (killed.exit_reason, killed.exit_status) == (ExitReason.FAILED, 128 + 9)
    assert "EXIT" in failed.message


def test_memory_and_run_limits_are_memlimit_and_timelimit(attach_any: DriverFactory) -> None:
    lsf = attach_any()
    hog = f"{sys.executable} -c 'import time; block = b\"x\" * (300 * 1024 * 1024); time.sleep(10)'"
    over_memory, over_time = lsf.submit(make_job(1, hog, memory=50 * MIB), make_job(2, "sleep 30", wall_time=1.0))
    memory, wall = lsf.events.outcome(1), lsf.events.outcome(2)
    assert memory.exit_reason is ExitReason.MEMLIMIT and memory.exit_status != 0
    assert "TERM_MEMLIMIT" in memory.message and over_memory.backing_id in memory.message
    assert wall.exit_reason is ExitReason.TIMELIMIT and wall.exit_status != 0
    assert "TERM_RUNLIMIT" in wall.message and "wall time" in wall.message


def test_jobs_killed_by_someone_else_are_killed_and_a_missing_directory_is_error(attach_any: DriverFactory, any_fake: FakeLsf, tmp_path: Path) -> None:
    lsf, fake = attach_any(), any_fake
    owner, forced = lsf.submit(make_job(1, "sleep 300"), make_job(2, "sleep 300"))
    lsf.submit(make_job(3, "true", working_directory=str(tmp_path / "no-such-directory")))
    lsf.events.wait_started(1)
    lsf.events.wait_started(2)
    assert fake.run("bkill", owner.backing_id).returncode == 0  # a person's, not KillJobs
    assert fake.run("bkill", "-r", forced.backing_id).returncode == 0
    for job_id, keyword in ((1, "TERM_OWNER"), (2, "TERM_FORCE_OWNER")):
        outcome = lsf.events.outcome(job_id)
        assert outcome.exit_reason is ExitReason.KILLED and outcome.exit_status != 0
        assert keyword in outcome.message
    missing = lsf.events.outcome(3)
    assert (missing.exit_reason, missing.exit_status) == (ExitReason.ERROR, 255)
    assert "TERM_CWD_NOTEXIST" in missing.message


def test_hostile_names_values_and_paths_arrive_byte_for_byte_and_never_run(attach: DriverFactory, fake: FakeLsf, tmp_path: Path) -> None:
    lsf = attach()
    canary = tmp_path / "canary"
    environment = {
        "SPACES": "a b  c",
        "QUOTES": 'it\'s "quoted" \\ back \\n \\c',
        "NEWLINES": "one\ntwo\n#BSUB -M 1\n#BSUB -q nowhere\n\n",
        "SUBSHELL": f"$(touch {canary}) `touch {canary}`",
        "COMMAS": "a,b,c=d,ALL",
        "GLOB": "* ? [a-z] ~",
        "UNICODE": "größe ✓",
    }
    workdir = tmp_path / "work dir 'with' quotes"
    workdir.mkdir()
    stdout = tmp_path / "out 'literal' $(x).json"
    names = json.dumps(sorted(environment))
    report = f"{sys.executable} -c 'import json, os; print(json.dumps({{n: os.environ.get(n) for n in {names}}})); print(os.getcwd())'"
    name = "name; $(touch canary) 'q' <angle> [1]"
    lsf.submit(make_job(1, report + "\n#BSUB -M 1", name=name, environment=environment, working_directory=str(workdir), stdout_path=str(stdout)))

    assert lsf.events.outcome(1).exit_reason is ExitReason.FINISHED
    seen, cwd = stdout.read_text().splitlines()
    assert json.loads(seen) == environment
    assert cwd == str(workdir)
    assert not canary.exists() and not (workdir / "canary").exists()
    ((submitted, _),) = fake.jobs().values()
    assert submitted["description"] == name and submitted["memory_limit_kb"] == 64 * 1024  # no #BSUB line was read


def test_bad_names_gpu_requests_and_fighting_extra_arguments_are_refused_naming_the_field(attach: DriverFactory) -> None:
    lsf = attach()
    with pytest.raises(InvalidArgument) as caught:
        lsf.driver.validate(make_job(1, "true", environment={"GOOD": "1", "not a name": "x"}))
    assert caught.value.field == "environment['not a name']"
    with pytest.raises(InvalidArgument) as caught:
        lsf.driver.validate(make_job(1, "true", accelerators=(AcceleratorRequest(1, model="a"), AcceleratorRequest(1, model="b"))))
    assert caught.value.field == "accelerators"
    fine = ["-H", "-m", "lsfhost1", "-R", "span[hosts=1]", "-x", "-app", "big"]
    lsf.driver.validate(make_job(1, "true", options=pb.LsfOptions(extra_args=fine)))
    for refused in (["-n", "4"], ["-M", "1"], ["-R", "rusage[mem=1]"], ["-W", "5"], ["-J", "x"], ["-o", "f"], ["-Is"], ["-K"], ["-q", "x"]):
        with pytest.raises(InvalidArgument) as caught:
            lsf.driver.validate(make_job(1, "true", options=pb.LsfOptions(extra_args=["-x", *refused])))
        assert caught.value.field in ("lsf.extra_args[1]", "lsf.extra_args[2]"), refused


def test_kill_of_a_held_a_pending_and_a_running_job_returns_once_they_are_dead(attach_any: DriverFactory, any_fake: FakeLsf) -> None:
    lsf, fake = attach_any(), any_fake
    marker = f"batchgate-kill-{uuid.uuid4().hex}"
    held, running = lsf.submit(make_job(1, "true", options=pb.LsfOptions(extra_args=["-H"])), make_job(2, f"sleep 300; : {marker}", cores=4))
    lsf.events.wait_started(2)
    (waiting,) = lsf.submit(make_job(3, "true", cores=2))  # the host's 4 slots are taken: it pends

    lsf.driver.kill([held, running, waiting])

    states = {job_id: state["stat"] for job_id, (_, state) in fake.jobs().items()}
    assert states == {1: "EXIT", 2: "EXIT", 3: "EXIT"}
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1, "the job's process outlived the kill"
    time.sleep(5 * lsf.driver.poll_interval)
    assert not lsf.events.ends, "a killed job was reported"


def test_lsf_down_on_submit_and_on_bjobs_is_ridden_out_and_nothing_is_doubled(attach: DriverFactory, fake: FakeLsf) -> None:
    counting = CountingRunner(fake.runner)
    lsf = attach(runner=counting)
    lsf.submit(make_job(1, "sleep 3"))  # the first bjobs (for jobs left by an earlier run) is behind us
    fake.inject("bsub", "down", times=2)
    fake.inject("bsub", "not-responding")
    lsf.submit(make_job(2, "true"))
    assert counting.commands["bsub"] == 1 + 4
    lsf.events.wait_started(1)
    fake.inject("bjobs", "down", seconds=2.0)
    assert lsf.events.outcome(1).exit_reason is ExitReason.FINISHED
    assert lsf.events.outcome(2).exit_reason is ExitReason.FINISHED
    time.sleep(5 * lsf.driver.poll_interval)
    assert lsf.events.ended_ids() == Counter({1: 1, 2: 1})
    assert len(fake.jobs()) == 2


def test_a_lasting_outage_fails_the_submission_quoting_lsf(attach: DriverFactory, fake: FakeLsf) -> None:
    lsf = attach(command_timeout=2.0)
    fake.inject("bsub", "down", seconds=30.0)
    assert list(lsf.driver.submit([make_job(1, "true")])) == [""]
    outcome = lsf.events.outcome(1, timeout=1)
    assert outcome.exit_reason is ExitReason.ERROR
    assert "bsub kept failing" in outcome.message and "LSF is down. Please wait..." in outcome.message
    assert not fake.jobs()


def test_jobs_lsf_no_longer_answers_for_are_lost_and_jobs_it_forgot_are_missing(attach_any: DriverFactory, any_fake: FakeLsf) -> None:
    lsf, fake = attach_any(command_timeout=1.5), any_fake
    running, held = lsf.submit(make_job(1, "sleep 30"), make_job(2, "true", options=pb.LsfOptions(extra_args=["-H"])))
    lsf.events.wait_started(1)
    shutil.rmtree(fake.root / "jobs" / held.backing_id)  # gone from bjobs, bhist and bacct alike
    missing = lsf.events.outcome(2)
    assert missing.exit_reason is ExitReason.MISSING and f"no record of job {held.backing_id}" in missing.message

    fake.inject("bjobs", "not-responding", seconds=30.0)
    lost = lsf.events.outcome(1)
    assert (lost.exit_reason, lost.exit_status) == (ExitReason.LOST, 255)
    assert f"lost sight of lsf job {running.backing_id}" in lost.message and "batch system daemon not responding" in lost.message


def test_a_submission_whose_answer_is_lost_is_not_submitted_again(attach: DriverFactory, fake: FakeLsf) -> None:
    counting = CountingRunner(fake.runner)
    lsf = attach(runner=counting)
    fake.inject("bsub", "lost")  # LSF takes the job; bsub prints "LSF is down" all the same
    (submitted,) = lsf.submit(make_job(1, "true"))
    assert counting.commands["bsub"] == 1
    assert lsf.events.outcome(1).exit_reason is ExitReason.FINISHED
    assert [job_id for job_id, (job, _) in fake.jobs().items() if job["name"] == lsf.driver.tag(1)] == [int(submitted.backing_id)]


def test_an_answer_without_a_job_id_is_never_taken_for_one(attach: DriverFactory, fake: FakeLsf) -> None:
    garbled = 1

    def garbling(argv: Sequence[str], stdin: str | None, timeout: float) -> str:
        nonlocal garbled
        output = fake.runner(argv, stdin, timeout)
        if argv[0] == "bsub" and garbled:
            garbled -= 1
            return "Job <> is being looked at."  # the job went in, the answer is of no use
        return output

    counting = CountingRunner(garbling)
    lsf = attach(runner=counting)
    (submitted,) = lsf.submit(make_job(1, "true"))
    assert counting.commands["bsub"] == 1 and list(fake.jobs()) == [int(submitted.backing_id)]
    assert lsf.events.outcome(1).exit_reason is ExitReason.FINISHED


@pytest.mark.parametrize("version", list(LSF_VERSIONS.values()), ids=list(LSF_VERSIONS))
def test_a_restarted_driver_adopts_its_jobs_and_finds_those_bjobs_forgot_in_bhist_then_bacct(tmp_path: Path, version: str) -> None:
    # LSF forgets finished jobs after a second here (CLEAN_PERIOD): bhist and bacct know them.
    fake = FakeLsf(tmp_path / "lsf", clean_period=1.0, version=version)
    first = attach_driver(fake)
    submitted = first.submit(
        make_job(1, "sleep 0.5"),
        make_job(2, "sleep 6"),
        make_job(3, "exit 5"),
        make_job(4, "sleep 30", wall_time=1.0),  # killed at its run limit, then pruned from lsb.events
        make_job(5, "true", options=pb.LsfOptions(extra_args=["-H"])),  # to be pruned from lsb.events and lsb.acct
    )
    first.driver.close()  # before it could see jobs 4 and 5 end
    reported_before = set(first.events.ended_ids())
    backing = {s.job.job_id: int(s.backing_id) for s in submitted}
    assert fake.run("bkill", str(backing[5])).returncode == 0
    deadline = time.monotonic() + 20
    while not all(state["stat"] in ("DONE", "EXIT") for job_id, (_, state) in fake.jobs().items() if job_id != backing[2]):
        assert time.monotonic() < deadline, f"jobs still running: {fake.jobs()}"
        time.sleep(0.2)
    time.sleep(1.5)  # and have left bjobs, while no driver watched
    fake.prune(backing[4], events=True)
    fake.prune(backing[5], events=True, accounting=True)

    counting = CountingRunner(fake.runner)
    second = attach_driver(fake, first.instance_id, runner=counting)
    try:
        second.driver.adopt(
            [
                SubmittedJob(s.job, s.backing_id, started_at=first.events.starts.get(s.job.job_id, (None, None))[1])
                for s in submitted
                if s.job.job_id not in reported_before
            ]
        )
        for job_id in {1, 2, 3, 4, 5} - reported_before:
            second.events.outcome(job_id)
        time.sleep(5 * second.driver.poll_interval)
    finally:
        second.driver.close()
        fake.shutdown()
    assert first.events.ended_ids() + second.events.ended_ids() == Counter({1: 1, 2: 1, 3: 1, 4: 1, 5: 1})
    outcomes = {job_id: outcome for job_id, outcome in first.events.ends + second.events.ends}
    assert [outcomes[job_id].exit_reason for job_id in (1, 2, 3)] == [ExitReason.FINISHED, ExitReason.FINISHED, ExitReason.FAILED]
    assert outcomes[3].exit_status == 5 and outcomes[1].wall_time is not None
    assert outcomes[4].exit_reason is ExitReason.TIMELIMIT and "TERM_RUNLIMIT" in outcomes[4].message  # from bacct
    assert outcomes[5].exit_reason is ExitReason.MISSING and f"no record of job {backing[5]}" in outcomes[5].message
    assert {"bhist", "bacct"} <= set(counting.commands)


def test_a_job_submitted_but_not_recorded_before_a_restart_is_not_submitted_twice(attach: DriverFactory, fake: FakeLsf) -> None:
    job = make_job(1, "sleep 1")
    first = attach()
    (submitted,) = first.submit(job)
    first.driver.close()

    counting = CountingRunner(fake.runner)
    second = attach(first.instance_id, runner=counting)
    assert list(second.driver.submit([job])) == [submitted.backing_id]
    assert "bsub" not in counting.commands
    assert second.events.outcome(1).exit_reason is ExitReason.FINISHED


@pytest.mark.parametrize(
    "unit, per_slot, limit_kb, reserved_kb",
    [
        ("MB", False, 100 * 1024, 100 * 1024),
        ("GB", False, 1024**2, 1024**2),  # rounded up: never less than asked
        ("", False, 100 * 1024, 100 * 1024),  # -M in KB, rusage in MB: LSF's defaults
        ("MB", True, 25 * 1024, 25 * 1024),  # per slot, of 4
    ],
)
def test_memory_goes_to_bsub_in_the_clusters_unit(tmp_path: Path, unit: str, per_slot: bool, limit_kb: int, reserved_kb: int) -> None:
    fake = FakeLsf(tmp_path / "lsf", unit_for_limits=unit)
    lsf = attach_driver(fake, memory_per_slot=per_slot)  # learns the unit from `lsadmin showconf lim`
    try:
        lsf.submit(make_job(1, "true", memory=100 * MIB, cores=3.5))
        assert lsf.events.outcome(1).exit_reason is ExitReason.FINISHED
    finally:
        lsf.driver.close()
    ((job, _),) = fake.jobs().values()
    assert (job["memory_limit_kb"], job["reserved_kb"], job["slots"]) == (limit_kb, reserved_kb, 4)


def test_scheduling_status_names_why_jobs_wait(attach: DriverFactory) -> None:
    lsf = attach()
    lsf.submit(make_job(1, "sleep 30", cores=4))
    lsf.events.wait_started(1)
    lsf.submit(make_job(2, "true", cores=1), make_job(3, "true", options=pb.LsfOptions(extra_args=["-H"])))
    deadline = time.monotonic() + 10
    while "Not enough job slot(s)" not in (status := lsf.driver.scheduling_status()).message:
        assert time.monotonic() < deadline, f"no pending reason seen: {status}"
        time.sleep(0.1)
    assert status.message.startswith("1 running in lsf; 2 pending") and not status.deadlocked


def test_one_bjobs_per_poll_cycle_whatever_the_number_of_jobs(attach: DriverFactory, fake: FakeLsf) -> None:
    counting = CountingRunner(fake.runner)
    lsf = attach(runner=counting)
    lsf.submit(*[make_job(job_id, "true", options=pb.LsfOptions(extra_args=["-H"])) for job_id in range(1, 13)])
    counting.commands.clear()
    cycles_before = lsf.driver.poll_cycles
    time.sleep(2)
    lsf.driver.close()
    cycles = lsf.driver.poll_cycles - cycles_before
    assert cycles >= 5
    assert set(counting.commands) == {"bjobs"} and cycles - 1 <= counting.commands["bjobs"] <= cycles


def test_limits_nodes_and_gpus_come_from_lshosts_and_bhosts(tmp_path: Path) -> None:
    hosts = [
        {"name": "small", "cores": 2, "memory_mb": 2048, "tmp_mb": 1024},
        {"name": "gpu1", "cores": 8, "memory_mb": 16384, "tmp_mb": 4096, "gpus": 2, "gpu_model": "TeslaV100"},
    ]
    fake = FakeLsf(tmp_path / "lsf", hosts=hosts)
    lsf = attach_driver(fake)
    try:
        limits = lsf.driver.limits()
        assert (limits.max_cores, limits.max_memory, limits.max_disk) == (8, 16 * 1024**3, 4 * 1024**3)
        assert limits.accelerators == (AcceleratorRequest(count=2, kind="gpu", model="TeslaV100"),)
        assert sorted((node.name, node.cores, node.memory) for node in lsf.driver.nodes()) == [("gpu1", 8, 16 * 1024**3), ("small", 2, 2 * 1024**3)]
        assert sorted(shape.cores for shape in lsf.driver.node_types()) == [2, 8]

        lsf.submit(make_job(1, 'test "$CUDA_VISIBLE_DEVICES" = 0,1', accelerators=(AcceleratorRequest(2, model="TeslaV100"),)))
        assert lsf.events.outcome(1).exit_reason is ExitReason.FINISHED
        ((job, state),) = fake.jobs().values()
        assert (job["gpus"], state["host"]) == (2, "gpu1")
    finally:
        lsf.driver.close()
        fake.shutdown()


@pytest.mark.parametrize("version, output", [("10.1.0.13", "json"), ("10.1.0.1", "classic"), ("9.1.3", "classic"), ("8.0.1", "classic")])
def test_bjobs_is_asked_for_json_only_where_lsid_names_an_lsf_that_has_it(tmp_path: Path, version: str, output: str) -> None:
    fake = FakeLsf(tmp_path / "lsf", version=version)
    counting = CountingRunner(fake.runner)
    lsf = attach_driver(fake, runner=counting)
    try:
        lsf.submit(make_job(1, "exit 7"))
        outcome = lsf.events.outcome(1)
    finally:
        lsf.driver.close()
    assert lsf.driver.bjobs_output == output and counting.commands["lsid"] == 1
    assert (outcome.exit_reason, outcome.exit_status) == (ExitReason.FAILED, 7)


def test_an_lsf_that_refuses_bjobs_json_is_asked_the_classic_way(tmp_path: Path) -> None:
    fake = FakeLsf(tmp_path / "lsf", version="8.0.1")
    lsf = attach_driver(fake, bjobs_output="json")  # told wrong: this LSF's bjobs has no -json
    try:
        lsf.submit(make_job(1, "exit 3"), make_job(2, "sleep 30", wall_time=1.0))
        failed, timed_out = lsf.events.outcome(1), lsf.events.outcome(2)
    finally:
        lsf.driver.close()
    assert lsf.driver.bjobs_output == "classic"
    assert (failed.exit_reason, failed.exit_status) == (ExitReason.FAILED, 3)
    assert timed_out.exit_reason is ExitReason.TIMELIMIT and "TERM_RUNLIMIT" in timed_out.message


def test_the_default_queues_run_limit_is_the_longest_wall_time(tmp_path: Path) -> None:
    fake = FakeLsf(tmp_path / "lsf", queues={"normal": 30, "short": 1, "long": None})
    counting = CountingRunner(fake.runner)
    default, short, long = (attach_driver(fake, queue=queue, runner=counting) for queue in ("", "short", "long"))
    try:
        assert default.driver.limits().max_wall_time == 30 * 60  # bparams names the default queue
        assert short.driver.limits().max_wall_time == 60
        assert long.driver.limits().max_wall_time is None
        assert default.driver.limits().max_wall_time == 30 * 60
        assert counting.commands["bqueues"] == 3 and counting.commands["bparams"] == 1  # asked once, then cached
        (job,) = short.submit(make_job(1, "sleep 30"))  # no wall time of its own: the queue's RUNLIMIT
        outcome = short.events.outcome(1)
        assert outcome.exit_reason is ExitReason.TIMELIMIT and "TERM_RUNLIMIT" in outcome.message
    finally:
        for attached in (default, short, long):
            attached.driver.close()
        fake.shutdown()


def test_run_limits_are_read_as_bqueues_l_prints_them() -> None:
    assert run_limit(" RUNLIMIT\n 60.0 min\n") == 3600
    side_by_side = " CPULIMIT                RUNLIMIT\n 20.0 min of hostA        480.0 min of hostA\n"
    assert run_limit(side_by_side) == 480 * 60
    default_and_maximum = "DEFAULT LIMITS:\n RUNLIMIT\n 30.0 min\n\nMAXIMUM LIMITS:\n RUNLIMIT\n 120.0 min\n"
    assert run_limit(default_and_maximum) == 120 * 60
    assert run_limit("DEFAULT LIMITS:\n RUNLIMIT\n 30.0 min\n") is None  # a default only: no maximum
    assert run_limit("QUEUE: normal\nPARAMETERS/STATISTICS\n") is None


def test_classic_bjobs_lines_are_read_with_or_without_an_execution_host_or_a_year() -> None:
    from batchgate.services.lsf.reading import classic_status

    header = "JOBID   USER    STAT  QUEUE      FROM_HOST   EXEC_HOST   JOB_NAME   SUBMIT_TIME"
    running = "111     user1   RUN   normal     hostA       4*hostB:hostC batchgate:a1:7 Oct 22 09:22"
    pending = "112     user1   PEND  normal     hostA                   batchgate:a1:8 Oct  2 09:22 2024"
    assert classic_status(header) is None
    assert [(s.backing_id, s.state, s.tag) for s in map(classic_status, (running, pending)) if s] == [
        ("111", "RUN", "batchgate:a1:7"),
        ("112", "PEND", "batchgate:a1:8"),
    ]


def test_lsf_down_at_the_start_is_not_taken_for_an_lsf_without_bjobs_json(attach: DriverFactory, fake: FakeLsf) -> None:
    lsf = attach(command_timeout=1.0)
    fake.inject("bjobs", "down", seconds=2.5)  # lsid answers: this LSF has -json, but bjobs is down
    assert list(lsf.driver.submit([make_job(1, "true")])) == [""]
    assert "LSF is down" in lsf.events.outcome(1, timeout=1).message
    assert lsf.driver.bjobs_output == "json"
    time.sleep(2.5)
    lsf.submit(make_job(2, "exit 4"))
    assert (lsf.events.outcome(2).exit_reason, lsf.driver.bjobs_output) == (ExitReason.FAILED, "json")
