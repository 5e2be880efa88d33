"""`batchgate serve lsf` as a user runs it, in front of the fake LSF: a kill -9 with jobs in
flight, outages, the cluster's units, metrics by the service's name, and a gateway with local,
Slurm and LSF behind it."""

from __future__ import annotations

import urllib.request
from collections import Counter
from pathlib import Path

import grpc
import pytest
from harness import collect_updates, spec, start_service, updates_within, wait_until
from lsf_cluster import FakeLsf, start_lsf

from batchgate.errors import InsufficientSystemResources, InvalidArgument, from_rpc_error
from batchgate.v1 import batchgate_pb2 as pb

MIB = 1024**2


def test_a_service_killed_with_jobs_in_flight_adopts_them_and_reports_each_once(fake: FakeLsf, tmp_path: Path) -> None:
    service = start_lsf(fake, tmp_path / "lsf")
    try:
        stub = service.stub()
        quick, slow, failing = stub.IssueJobs(pb.IssueJobsRequest(specs=[spec("sleep 1"), spec("sleep 4"), spec("sleep 1; exit 5")])).job_ids
        wait_until(lambda: len(stub.ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running) == 3, message="all three running")

        service.kill()  # kill -9: the jobs run on in LSF, and end while no service watches
        wait_until(lambda: sum(state["stat"] == "DONE" for _, state in fake.jobs().values()) >= 1, message="a job ending meanwhile")
        service = service.restart()

        updates = collect_updates(service.stub(), 3)
        assert {u.job_id: (u.exit_reason, u.exit_status) for u in updates} == {
            quick: (pb.EXIT_REASON_FINISHED, 0),
            slow: (pb.EXIT_REASON_FINISHED, 0),
            failing: (pb.EXIT_REASON_FAILED, 5),
        }
        assert not updates_within(service.stub(), 1.0, after=max(u.sequence for u in updates))
        assert len(fake.jobs()) == 3  # none was submitted again
    finally:
        service.kill()


def test_outages_are_ridden_out_and_memory_goes_in_the_units_of_lsf_conf(tmp_path: Path) -> None:
    fake = FakeLsf(tmp_path / "lsf-cluster", unit_for_limits="GB")
    service = start_lsf(fake, tmp_path / "lsf")
    try:
        stub = service.stub()
        fake.inject("bsub", "down", seconds=2.0)
        fake.inject("bjobs", "not-responding", seconds=3.0)
        ids = stub.IssueJobs(pb.IssueJobsRequest(specs=[spec("true", memory=1536 * MIB) for _ in range(3)])).job_ids
        updates = collect_updates(stub, 3)
        assert Counter(u.job_id for u in updates) == Counter(ids)
        assert {u.exit_reason for u in updates} == {pb.EXIT_REASON_FINISHED}
        assert [job["memory_limit_kb"] for job, _ in fake.jobs().values()] == [2 * 1024**2] * 3  # 1.5 GiB: 2 GB, never less
    finally:
        service.kill()
        fake.shutdown()


def test_extra_arguments_that_fight_the_job_are_refused_naming_the_field_or_flag(fake: FakeLsf, tmp_path: Path) -> None:
    service = start_lsf(fake, tmp_path / "lsf")
    try:
        bad = spec("true", lsf=pb.LsfOptions(queue="short", extra_args=["-x", "-M", "1"]))
        with pytest.raises(grpc.RpcError) as caught:
            service.stub().IssueJob(pb.IssueJobRequest(spec=bad))
        error = from_rpc_error(caught.value)
        assert isinstance(error, InvalidArgument) and error.field == "spec.lsf.extra_args[1]"
        assert not fake.jobs()
    finally:
        service.kill()
    with pytest.raises(RuntimeError, match=r"--lsf-extra-args: '-n' fights what batchgate sets"):
        start_lsf(fake, tmp_path / "lsf-2", "--lsf-extra-args", "-x -n 4")


def test_a_wall_time_over_the_queues_run_limit_is_refused_and_a_job_without_one_ends_at_it(tmp_path: Path) -> None:
    fake = FakeLsf(tmp_path / "lsf-cluster", queues={"normal": None, "short": 1})  # RUNLIMIT 1 min (a second here)
    service = start_lsf(fake, tmp_path / "lsf", "--lsf-queue", "short")
    try:
        stub = service.stub()
        assert stub.GetCapabilities(pb.GetCapabilitiesRequest()).max_wall_time_seconds == 60
        with pytest.raises(grpc.RpcError) as caught:
            stub.IssueJob(pb.IssueJobRequest(spec=spec("true", wall_time_seconds=120)))
        error = from_rpc_error(caught.value)
        assert isinstance(error, InsufficientSystemResources) and error.resource == "wall_time" and error.available == 60
        job_id = stub.IssueJob(pb.IssueJobRequest(spec=spec("sleep 30"))).job_id
        (update,) = collect_updates(stub, 1)
        assert (update.job_id, update.exit_reason) == (job_id, pb.EXIT_REASON_TIMELIMIT) and "TERM_RUNLIMIT" in update.message
        assert len(fake.jobs()) == 1
    finally:
        service.kill()
        fake.shutdown()


def test_scheduler_commands_are_counted_under_the_services_name(fake: FakeLsf, tmp_path: Path) -> None:
    service = start_lsf(fake, tmp_path / "lsf", "--name", "lsf-east")
    try:
        service.stub().IssueJob(pb.IssueJobRequest(spec=spec("true")))
        collect_updates(service.stub(), 1)
        metrics = urllib.request.urlopen(f"http://{service.metrics_address}/metrics", timeout=10).read().decode()
        for operation in ("bsub", "bjobs"):
            assert f'batchgate_scheduler_commands_total{{backend="lsf-east",operation="{operation}",result="ok"}}' in metrics
    finally:
        service.kill()


def test_a_gateway_routes_to_local_slurm_and_lsf_and_merges_their_updates(fake: FakeLsf, tmp_path: Path) -> None:
    from slurm.slurm_cluster import ensure_slurm

    ensure_slurm()
    backends = {
        "lsf": start_lsf(fake, tmp_path / "lsf"),
        "local": start_service("local", tmp_path / "local", "--cores", "2", "--memory", "2G", "--kill-grace", "1"),
        "slurm": start_service("slurm", tmp_path / "slurm", "--slurm-poll-interval", "0.2"),
    }
    gateway = start_service("gateway", tmp_path / "gateway", "--backends", ",".join(f"{name}={s.address}" for name, s in backends.items()))
    try:
        stub = gateway.stub()
        specs = [spec(f"exit {code}", backend=name) for code, name in enumerate(backends, start=3)]
        specs += [spec("sleep 300", backend="lsf"), spec("true")]  # the last names none: the first, LSF, takes it
        *exits, sleeper, unnamed = stub.IssueJobs(pb.IssueJobsRequest(specs=specs)).job_ids

        merged = {u.job_id: u for u in collect_updates(stub, 4, timeout=90)}
        assert {job_id: (merged[job_id].backend, merged[job_id].exit_status) for job_id in exits} == {
            exits[0]: ("lsf", 3),
            exits[1]: ("local", 4),
            exits[2]: ("slurm", 5),
        }
        assert merged[unnamed].backend == "lsf" and merged[unnamed].exit_reason == pb.EXIT_REASON_FINISHED

        wait_until(lambda: sleeper in stub.ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running, message="the LSF sleeper running")
        stub.KillJobs(pb.KillJobsRequest(job_ids=[sleeper]))
        assert [state["exit_reason"] for _, state in fake.jobs().values() if state["stat"] == "EXIT" and state.get("exit_reason")] == ["TERM_OWNER"]
        assert not updates_within(stub, 1.5, after=max(u.sequence for u in merged.values()))
    finally:
        gateway.kill()
        for service in backends.values():
            service.kill()
