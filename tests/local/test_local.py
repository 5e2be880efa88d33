"""What the local backend promises beyond the contract: budgets, process trees, order, limits."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import grpc
import psutil
from harness import RunningService, collect_updates, spec, start_service, updates_within, wait_gone, wait_until

from batchgate.v1 import batchgate_pb2 as pb

GIB = 1024**3


def peak_overlap(log: Path) -> int:
    """The most jobs that were running at once, from lines 'start T' / 'end T' the jobs wrote."""
    edges = []
    for line in log.read_text().split("\n"):
        if line:
            kind, moment = line.split()
            edges.append((float(moment), 0 if kind == "end" else 1))
    running = peak = 0
    for _, is_start in sorted(edges):
        running += 1 if is_start else -1
        peak = max(peak, running)
    return peak


def timed_job(log: Path, seconds: float) -> str:
    return f'echo "start $(date +%s.%N)" >> {log}; sleep {seconds}; echo "end $(date +%s.%N)" >> {log}'


def test_running_jobs_never_exceed_the_core_budget(local_service: RunningService, tmp_path: Path) -> None:
    log = tmp_path / "cores.log"
    stub = local_service.stub()
    stub.IssueJobs(pb.IssueJobsRequest(specs=[spec(timed_job(log, 0.3), cores=0.7) for _ in range(8)]))
    assert all(u.exit_status == 0 for u in collect_updates(stub, 8))
    assert peak_overlap(log) == 2  # 2 cores hold two 0.7-core jobs, never three


def test_running_jobs_never_exceed_the_disk_budget(local_service: RunningService, tmp_path: Path) -> None:
    log = tmp_path / "disk.log"
    stub = local_service.stub()
    stub.IssueJobs(pb.IssueJobsRequest(specs=[spec(timed_job(log, 0.3), disk=4 * GIB) for _ in range(6)]))
    collect_updates(stub, 6)
    assert peak_overlap(log) == 2  # 10 GiB hold two 4 GiB jobs


def test_a_big_waiting_job_does_not_block_small_ones(local_service: RunningService, tmp_path: Path) -> None:
    stub = local_service.stub()
    (hog,) = stub.IssueJobs(pb.IssueJobsRequest(specs=[spec("sleep 300", cores=1.5)])).job_ids
    wait_until(lambda: hog in stub.ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running)
    big, small = stub.IssueJobs(pb.IssueJobsRequest(specs=[spec("true", cores=1.0), spec("true", cores=0.5)])).job_ids

    assert [u.job_id for u in collect_updates(stub, 1)] == [small]
    assert big in stub.ListIssuedJobs(pb.ListIssuedJobsRequest()).job_ids
    status = stub.GetSchedulingStatus(pb.GetSchedulingStatusRequest())
    assert "1 job(s) waiting for cores" in status.message and status.queued_jobs == 1 and status.running_jobs == 1
    stub.KillJobs(pb.KillJobsRequest(job_ids=[hog]))
    assert [u.job_id for u in collect_updates(stub, 2)][1] == big


def test_a_job_killed_while_waiting_never_starts(local_service: RunningService, tmp_path: Path) -> None:
    stub = local_service.stub()
    marker = tmp_path / "started"
    (hog,) = stub.IssueJobs(pb.IssueJobsRequest(specs=[spec("sleep 300", cores=2)])).job_ids
    (waiting,) = stub.IssueJobs(pb.IssueJobsRequest(specs=[spec(f"touch {marker}", cores=1)])).job_ids
    stub.KillJobs(pb.KillJobsRequest(job_ids=[waiting]))
    stub.KillJobs(pb.KillJobsRequest(job_ids=[hog]))
    (after,) = stub.IssueJobs(pb.IssueJobsRequest(specs=[spec("true", cores=2)])).job_ids
    assert [u.job_id for u in collect_updates(stub, 1)] == [after]
    assert not marker.exists()


STUBBORN_TREE = """
trap '' TERM
echo $$ >> {pids}
setsid sh -c 'trap "" TERM; echo $$ >> {pids}; while :; do sleep 0.1; done' &
sh -c 'trap "" TERM; echo $$ >> {pids}; while :; do sleep 0.1; done' &
while :; do sleep 0.1; done
"""


def stubborn_pids(pids: Path) -> list[int]:
    wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 3, message="the tree to start")
    found = [int(pid) for pid in pids.read_text().split()]
    assert all(psutil.pid_exists(pid) for pid in found)
    return found


def test_kill_takes_the_whole_tree_even_escaped_and_term_ignoring(local_service: RunningService, tmp_path: Path) -> None:
    stub = local_service.stub()
    pids = tmp_path / "pids"
    (job,) = stub.IssueJobs(pb.IssueJobsRequest(specs=[spec(STUBBORN_TREE.format(pids=pids))])).job_ids
    tree = stubborn_pids(pids)
    stub.KillJobs(pb.KillJobsRequest(job_ids=[job]))
    wait_gone(tree, timeout=5)  # KillJobs returned once they were dead; allow for reaping by init
    assert not updates_within(stub, 1.0)


def test_shutdown_takes_the_whole_tree_and_the_job_runs_again_after_restart(tmp_path: Path) -> None:
    service = start_service("local", tmp_path / "svc", "--cores", "2", "--kill-grace", "0.5")
    pids = tmp_path / "pids"
    (job,) = service.stub().IssueJobs(pb.IssueJobsRequest(specs=[spec(STUBBORN_TREE.format(pids=pids))])).job_ids
    tree = stubborn_pids(pids)
    assert service.stop() == 0
    wait_gone(tree, timeout=5)

    pids.unlink()
    restarted = service.restart()
    try:
        wait_until(lambda: job in restarted.stub().ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running)
        stubborn_pids(pids)
        restarted.stub().KillJobs(pb.KillJobsRequest(job_ids=[job]))
    finally:
        restarted.kill()


def test_a_kill_cut_short_by_a_crash_is_made_again_after_the_restart(tmp_path: Path) -> None:
    service = start_service("local", tmp_path / "svc", "--cores", "2", "--kill-grace", "60")
    pids = tmp_path / "pids"
    stub = service.stub()
    (job,) = stub.IssueJobs(pb.IssueJobsRequest(specs=[spec(STUBBORN_TREE.format(pids=pids))])).job_ids
    tree = stubborn_pids(pids)

    def kill_job() -> None:
        with contextlib.suppress(grpc.RpcError):  # the service dies while the kill waits
            stub.KillJobs(pb.KillJobsRequest(job_ids=[job]))

    killer = threading.Thread(target=kill_job)
    killer.start()
    store = sqlite3.connect(service.state_dir / "local.sqlite")
    wait_until(lambda: store.execute("SELECT state FROM jobs WHERE job_id = ?", (job,)).fetchone() == ("killing",))
    service.kill()  # in the middle of the grace period: the tree ignores SIGTERM and lives on
    killer.join()
    assert all(psutil.pid_exists(pid) for pid in tree)

    restarted = start_service("local", service.state_dir, "--cores", "2", "--kill-grace", "0.5", log_suffix="-restarted")
    try:
        wait_gone(tree, timeout=10)
        wait_until(lambda: store.execute("SELECT state FROM jobs WHERE job_id = ?", (job,)).fetchone() == ("killed",))
        assert not updates_within(restarted.stub(), 1.0)
    finally:
        restarted.kill()


def test_a_job_running_across_a_crash_is_adopted_and_reported_once(tmp_path: Path) -> None:
    service = start_service("local", tmp_path / "svc", "--cores", "2")
    release = tmp_path / "release"
    (job,) = service.stub().IssueJobs(
        pb.IssueJobsRequest(specs=[spec(f"while [ ! -e {release} ]; do sleep 0.05; done")])
    ).job_ids
    wait_until(lambda: job in service.stub().ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running)
    service.kill()

    restarted = service.restart()
    try:
        assert job in restarted.stub().ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running
        release.touch()
        (update,) = collect_updates(restarted.stub(), 1)
        assert update.job_id == job and update.exit_reason == pb.EXIT_REASON_LOST
        assert "restart" in update.message
        assert not updates_within(restarted.stub(), 1.0, after=update.sequence)
    finally:
        restarted.kill()


def test_a_job_over_its_wall_time_is_killed_and_says_so(local_service: RunningService) -> None:
    stub = local_service.stub()
    stub.IssueJob(pb.IssueJobRequest(spec=spec("sleep 30", wall_time_seconds=0.5)))
    (update,) = collect_updates(stub, 1)
    assert update.exit_reason == pb.EXIT_REASON_TIMELIMIT
    assert "wall time of 0.5 s" in update.message
    assert update.exit_status == 128 + 9 and 0.5 <= update.wall_time_seconds < 10


def test_output_paths_working_directory_and_thread_count(local_service: RunningService, tmp_path: Path) -> None:
    stub = local_service.stub()
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    request = spec(
        'pwd; echo "threads=$OMP_NUM_THREADS"; echo oops >&2',
        cores=1.5,
        working_directory=str(tmp_path),
        stdout_path=str(out),
        stderr_path=str(err),
    )
    stub.IssueJob(pb.IssueJobRequest(spec=request))
    collect_updates(stub, 1)
    assert out.read_text() == f"{tmp_path}\nthreads=1\n"
    assert err.read_text() == "oops\n"


def test_a_missing_working_directory_fails_the_job_with_a_reason(local_service: RunningService, tmp_path: Path) -> None:
    stub = local_service.stub()
    stub.IssueJob(pb.IssueJobRequest(spec=spec("true", working_directory=str(tmp_path / "nowhere"))))
    (update,) = collect_updates(stub, 1)
    assert update.exit_reason == pb.EXIT_REASON_ERROR and "nowhere" in update.message


FAKE_NVIDIA_SMI = """#!/bin/sh
# Prints what nvidia-smi --query-gpu=index,name --format=csv,noheader prints on a two-GPU host.
echo "0, NVIDIA A100-SXM4-40GB"
echo "1, NVIDIA A100-SXM4-40GB"
"""


def test_gpus_are_detected_and_handed_out_one_job_each(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text(FAKE_NVIDIA_SMI)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    service = start_service("local", tmp_path / "svc", "--cores", "2", env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    try:
        stub = service.stub()
        caps = stub.GetCapabilities(pb.GetCapabilitiesRequest())
        assert [(a.accelerator.count, a.accelerator.model) for a in caps.accelerators] == [(2, "nvidia-a100-sxm4-40gb")]
        outputs = [tmp_path / f"gpu{index}" for index in range(3)]
        gpu = pb.Accelerator(count=1, kind="gpu", brand="nvidia")
        stub.IssueJobs(
            pb.IssueJobsRequest(
                specs=[spec(f'echo "$CUDA_VISIBLE_DEVICES" > {path}; sleep 0.3', accelerators=[gpu]) for path in outputs]
            )
        )
        collect_updates(stub, 3)
        devices = [path.read_text().strip() for path in outputs]
        assert sorted(devices[:2]) == ["0", "1"] and devices[2] in ("0", "1")
    finally:
        service.kill()


def test_the_wall_time_of_a_sleep_is_measured(local_service: RunningService) -> None:
    stub = local_service.stub()
    started = time.monotonic()
    stub.IssueJob(pb.IssueJobRequest(spec=spec("sleep 0.5")))
    (update,) = collect_updates(stub, 1)
    assert 0.5 <= update.wall_time_seconds <= time.monotonic() - started


def test_a_job_gets_only_stdin_stdout_and_stderr(local_service: RunningService, tmp_path: Path) -> None:
    # Descriptors the service has (or inherited from whatever started it) stay out of jobs.
    listing = tmp_path / "fds"
    stub = local_service.stub()
    stub.IssueJob(pb.IssueJobRequest(spec=spec(f"exec ls /proc/self/fd > {listing}")))
    collect_updates(stub, 1)
    assert sorted(listing.read_text().split()) == ["0", "1", "2", "3"]  # 3: ls reading the directory


def test_a_wall_time_of_ages_is_waited_for_like_any_other(local_service: RunningService) -> None:
    # epoll cannot wait 1e18 s: the reaper once died of it, and no job was ever reaped again.
    stub = local_service.stub()
    ages = stub.IssueJob(pb.IssueJobRequest(spec=spec("sleep 300", wall_time_seconds=1e18))).job_id
    wait_until(lambda: ages in stub.ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running, message="the job running")
    stub.IssueJob(pb.IssueJobRequest(spec=spec("exit 4")))
    (update,) = collect_updates(stub, 1)
    assert (update.exit_reason, update.exit_status) == (pb.EXIT_REASON_FAILED, 4)
    stub.KillJobs(pb.KillJobsRequest(job_ids=[ages]), timeout=30)
    assert ages not in stub.ListIssuedJobs(pb.ListIssuedJobsRequest()).job_ids
