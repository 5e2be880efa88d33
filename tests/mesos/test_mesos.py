"""`batchgate serve mesos` against the tests' own Mesos master (fake_master.py): placement,
refusals, lost agents, resent updates, restarts, heartbeats, authentication and options."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fake_master import AgentSpec, FakeMesosMaster
from harness import RunningService, collect_updates, spec, start_service, updates_within, wait_until
from mesos_cluster import start_master, start_mesos_service

from batchgate.errors import InsufficientSystemResources, InvalidArgument, from_rpc_error
from batchgate.v1 import batchgate_pb2 as pb

GIB = 1024**3


@pytest.fixture
def service(tmp_path: Path, master: FakeMesosMaster) -> Iterator[RunningService]:
    running = start_mesos_service(tmp_path / "service", master)
    yield running
    running.kill()


def issue(service: RunningService, *specs: pb.JobSpec) -> list[int]:
    return list(service.stub().IssueJobs(pb.IssueJobsRequest(specs=specs)).job_ids)


def on_agent(index: int) -> pb.MesosOptions:
    return pb.MesosOptions(attributes={"name": f"agent-{index}"})


def running(service: RunningService) -> set[int]:
    return set(service.stub().ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running)


def refusal(service: RunningService, job: pb.JobSpec) -> BaseException:
    with pytest.raises(grpc.RpcError) as caught:
        service.stub().IssueJob(pb.IssueJobRequest(spec=job))
    return from_rpc_error(caught.value)


def test_jobs_no_agent_can_hold_are_refused_at_issue(tmp_path: Path) -> None:
    # Each resource is somewhere, but no one agent has both: refused, not left waiting forever.
    agents = [AgentSpec("wide.test", cpus=8, mem=1024, disk=10240), AgentSpec("deep.test", cpus=1, mem=16384, disk=10240)]
    master = start_master(tmp_path / "mesos", agents)
    service = start_mesos_service(tmp_path / "service", master)
    try:
        too_many_cores = refusal(service, spec("true", cores=9))
        assert isinstance(too_many_cores, InsufficientSystemResources)
        assert (too_many_cores.resource, too_many_cores.requested, too_many_cores.available) == ("cores", 9, 8)
        neither = refusal(service, spec("true", cores=4, memory=8 * GIB))
        assert isinstance(neither, InsufficientSystemResources) and neither.resource in ("cores", "memory")
        assert "no single agent" in neither.message
        nowhere = refusal(service, spec("true", mesos=pb.MesosOptions(attributes={"rack": "r9"})))
        assert isinstance(nowhere, InsufficientSystemResources) and nowhere.resource == "attributes"
        check = service.stub().CheckJob(pb.CheckJobRequest(spec=spec("true", cores=4, memory=8 * GIB)))
        assert not check.accepted and "no single agent" in check.message
        (fits,) = issue(service, spec("true", cores=1, memory=8 * GIB))
        assert collect_updates(service.stub(), 1)[0].job_id == fits
        assert not master.launched[1:]  # the refused ones never reached Mesos
    finally:
        service.kill()
        master.stop()


def test_a_big_job_waiting_does_not_block_small_ones(service: RunningService, master: FakeMesosMaster) -> None:
    (holder,) = issue(service, spec("sleep 300", cores=1, mesos=on_agent(0)))
    wait_until(lambda: holder in running(service), message="the first job to run")
    big, small = issue(service, spec("sleep 300", cores=2, mesos=on_agent(0)), spec("true", cores=0.5, mesos=on_agent(0)))
    (update,) = collect_updates(service.stub(), 1)
    assert update.job_id == small and update.exit_reason == pb.EXIT_REASON_FINISHED
    assert big not in running(service)
    status = service.stub().GetSchedulingStatus(pb.GetSchedulingStatusRequest())
    assert status.queued_jobs == 1 and "waiting for offers" in status.message and not status.deadlocked
    service.stub().KillJobs(pb.KillJobsRequest(job_ids=[holder]))
    wait_until(lambda: big in running(service), message="the big job to start once there is room")
    service.stub().KillJobs(pb.KillJobsRequest(job_ids=[big]))


def test_tasks_of_an_unreachable_agent_are_lost_once_and_killed_if_they_return(service: RunningService, master: FakeMesosMaster) -> None:
    stranded = issue(service, spec("sleep 300", mesos=on_agent(1)), spec("sleep 300", mesos=on_agent(1)))
    (elsewhere,) = issue(service, spec("sleep 3", mesos=on_agent(2)))
    wait_until(lambda: set(stranded) | {elsewhere} <= running(service), message="the jobs to run")
    agent = master.agent_ids()[1]
    task_ids = master.tasks_on(agent)

    master.drop_agent(agent)
    lost = collect_updates(service.stub(), 2)
    assert sorted(update.job_id for update in lost) == sorted(stranded)
    assert all(update.exit_reason == pb.EXIT_REASON_LOST and update.exit_status == 255 for update in lost)
    assert all("unreachable" in update.message for update in lost)

    master.restore_agent(agent)  # they were running all along: the service kills them
    wait_until(lambda: not master.tasks_on(agent), message="the returning tasks to be killed")
    assert all(master.deliveries[(task_id, "TASK_KILLED")] for task_id in task_ids)
    rest = updates_within(service.stub(), 5.0, after=lost[-1].sequence)
    assert [update.job_id for update in rest] == [elsewhere]  # nothing more of the lost ones


def test_tasks_of_a_removed_agent_are_lost_at_once(service: RunningService, master: FakeMesosMaster) -> None:
    (gone,) = issue(service, spec("sleep 300", mesos=on_agent(3)))
    wait_until(lambda: gone in running(service), message="the job to run")
    master.remove_agent(master.agent_ids()[3])
    (update,) = collect_updates(service.stub(), 1)
    assert (update.job_id, update.exit_reason) == (gone, pb.EXIT_REASON_LOST)
    assert "TASK_GONE" in update.message
    assert not updates_within(service.stub(), 1.5, after=update.sequence)


def test_a_resent_status_update_is_reported_once(service: RunningService, master: FakeMesosMaster) -> None:
    master.hold_acknowledgements("TASK_FINISHED", "TASK_FAILED")
    jobs = issue(service, spec("true"), spec("exit 4"))
    updates = collect_updates(service.stub(), 2)
    task_ids = {update.backing_id for update in updates}
    ends = [(task, state) for task in task_ids for state in ("TASK_FINISHED", "TASK_FAILED")]
    wait_until(lambda: sum(master.deliveries[end] >= 3 for end in ends) == 2, message="each end sent three times")
    master.hold_acknowledgements()
    wait_until(lambda: not any(master.tasks_on(agent) for agent in master.agent_ids()), message="the acknowledgements")
    every = updates_within(service.stub(), 1.5)
    assert sorted(update.job_id for update in every) == sorted(jobs)
    assert {update.job_id: update.exit_status for update in every} == {jobs[0]: 0, jobs[1]: 4}


def test_after_kill_9_it_resubscribes_reconciles_and_reports_each_task_once(tmp_path: Path, master: FakeMesosMaster) -> None:
    service = start_mesos_service(tmp_path / "service", master)
    try:
        quick = issue(service, *[spec("sleep 2") for _ in range(3)])  # end while the service is down
        slow = issue(service, *[spec("sleep 6") for _ in range(2)])  # still running after the restart
        waiting = issue(service, *[spec("sleep 1", cores=1.5) for _ in range(5)])  # four agents: one waits
        wait_until(lambda: len(master.launched) == 9, message="nine tasks launched")
        first_framework = master.subscriptions[0].get("id")
        framework_id = master.connected_framework_ids()[0]
        assert first_framework is None  # a new framework, named by the master

        service.kill()
        service = service.restart()

        updates = collect_updates(service.stub(), 10, timeout=60)
        assert sorted(update.job_id for update in updates) == sorted(quick + slow + waiting)
        assert all(update.exit_reason == pb.EXIT_REASON_FINISHED for update in updates)
        assert master.subscriptions[-1]["id"] == {"value": framework_id}
        assert any(set(asked) >= {update.backing_id for update in updates if update.job_id in quick + slow} for asked in master.reconciled)
        assert max(collections.Counter(master.launched).values()) == 1  # nothing launched twice
        assert not updates_within(service.stub(), 2.0, after=updates[-1].sequence)
    finally:
        service.kill()


def test_a_task_launched_just_before_a_crash_is_taken_back_not_launched_again(tmp_path: Path, master: FakeMesosMaster) -> None:
    service = start_mesos_service(tmp_path / "service", master)
    try:
        master.hold_updates()  # the service never hears the task run, so the kit records no start
        (job,) = issue(service, spec("sleep 2"))
        wait_until(lambda: len(master.launched) == 1, message="the launch")
        service.kill()  # the store still has the job queued: the restarted service submits it again
        master.hold_updates(False)
        service = service.restart()
        (update,) = collect_updates(service.stub(), 1, timeout=60)
        assert (update.job_id, update.exit_reason) == (job, pb.EXIT_REASON_FINISHED)
        assert len(master.launched) == 1, master.launched  # its task was taken back, not launched again
        assert not updates_within(service.stub(), 1.5, after=update.sequence)
    finally:
        service.kill()


def test_missed_heartbeats_make_it_subscribe_again(service: RunningService, master: FakeMesosMaster) -> None:
    (before,) = issue(service, spec("true"))
    collect_updates(service.stub(), 1)
    subscribed = len(master.subscriptions)
    master.silence()  # the connection stays open; no heartbeat comes (every 0.5 s otherwise)
    wait_until(lambda: len(master.subscriptions) > subscribed, timeout=20, message="a new SUBSCRIBE")
    assert master.subscriptions[-1]["id"]["value"] == master.connected_framework_ids()[0]
    (after,) = issue(service, spec("exit 5"))
    (update,) = collect_updates(service.stub(), 1, after=1)
    assert (update.job_id, update.exit_status) == (after, 5)


def test_a_task_killed_by_someone_else_is_killed_and_our_kills_are_silent(service: RunningService, master: FakeMesosMaster) -> None:
    theirs, ours = issue(service, spec("sleep 300"), spec("sleep 300"))
    wait_until(lambda: {theirs, ours} <= running(service), message="both running")
    by_job = {
        job_id: task for job_id in (theirs, ours) for task in master.launched if task.endswith(f"-{job_id}")
    }  # batchgate-<instance>-<job>
    master.kill_task(by_job[theirs])
    (update,) = collect_updates(service.stub(), 1)
    assert (update.job_id, update.exit_reason) == (theirs, pb.EXIT_REASON_KILLED)
    service.stub().KillJobs(pb.KillJobsRequest(job_ids=[ours]))
    assert master.deliveries[(by_job[ours], "TASK_KILLED")]  # dead when KillJobs returns
    assert not updates_within(service.stub(), 1.5, after=update.sequence)


def test_working_directory_and_output_paths_reach_the_task_verbatim(service: RunningService, tmp_path: Path) -> None:
    odd = tmp_path / "a dir $(touch pwned); 'q'"
    odd.mkdir()
    out, err = odd / "out file", odd / "err`x`"
    (job,) = issue(service, spec("pwd; echo oops >&2", working_directory=str(odd), stdout_path=str(out), stderr_path=str(err)))
    collect_updates(service.stub(), 1)
    assert out.read_text().strip() == str(odd) and err.read_text() == "oops\n"
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_nodes_and_node_types_come_from_the_agents(service: RunningService, master: FakeMesosMaster) -> None:
    (job,) = issue(service, spec("sleep 300", cores=1.5, memory=GIB, mesos=on_agent(2)))
    wait_until(lambda: job in running(service), message="the job to run")

    def agent_2() -> pb.Node:
        nodes = {node.name: node for node in service.stub().GetNodes(pb.GetNodesRequest()).nodes}
        assert set(nodes) == {f"agent-{index}.test" for index in range(4)}
        return nodes["agent-2.test"]

    wait_until(lambda: agent_2().cores_used == 1.5, timeout=10, message="the agent's use")
    node = agent_2()
    assert (node.cores, node.memory, node.memory_used, node.running_jobs) == (2, 2 * GIB, GIB, 1)
    (node_type,) = service.stub().GetNodeTypes(pb.GetNodeTypesRequest()).node_types
    assert (node_type.cores, node_type.memory, node_type.count) == (2, 2 * GIB, 4)
    service.stub().KillJobs(pb.KillJobsRequest(job_ids=[job]))


def test_a_role_the_framework_does_not_hold_is_refused(service: RunningService) -> None:
    error = refusal(service, spec("true", mesos=pb.MesosOptions(role="other")))
    assert isinstance(error, InvalidArgument) and error.field == "spec.mesos.role"


def test_basic_authentication_with_principal_and_secret(tmp_path: Path) -> None:
    master = start_master(tmp_path / "mesos", credentials=("batch", "s3cret"))
    # The secret from the environment, as an operator should pass it.
    service = start_mesos_service(tmp_path / "service", master, "--mesos-principal", "batch", env={"BATCHGATE_MESOS_SECRET": "s3cret"})
    try:
        (job,) = issue(service, spec("echo authenticated"))
        assert collect_updates(service.stub(), 1)[0].job_id == job
        assert master.subscriptions[-1]["principal"] == "batch"
        # The agents' /state and files API take the same credentials.
        request = pb.GetJobOutputRequest(job_id=job)
        assert b"".join(response.data for response in service.stub().GetJobOutput(request, timeout=30)) == b"authenticated\n"
    finally:
        service.kill()
        master.stop()


def test_a_zookeeper_master_address_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="ZooKeeper"):
        start_service("mesos", tmp_path / "service", "--mesos-master", "zk://10.0.0.1:2181/mesos")


def test_an_ignored_node_gets_no_new_tasks_and_its_running_ones_finish(service: RunningService, master: FakeMesosMaster) -> None:
    stub = service.stub()
    (before,) = issue(service, spec("sleep 3", mesos=on_agent(0)))
    wait_until(lambda: before in running(service), message="a job on agent-0")
    assert stub.GetNodeInUse(pb.GetNodeInUseRequest(name="agent-0.test")).running_jobs == 1
    assert not stub.GetNodeInUse(pb.GetNodeInUseRequest(name="agent-1.test")).in_use
    stub.IgnoreNode(pb.IgnoreNodeRequest(name="agent-0.test"))
    assert {node.name: node.state for node in stub.GetNodes(pb.GetNodesRequest()).nodes}["agent-0.test"] == "ignored"

    pinned, anywhere = issue(service, spec("true", mesos=on_agent(0)), spec("true"))
    others = issue(service, *[spec("true") for _ in range(11)])
    updates = {update.job_id: update for update in collect_updates(stub, 13)}
    assert pinned not in updates  # it may run on agent-0 alone, which is ignored
    assert before in updates and updates[before].exit_reason == pb.EXIT_REASON_FINISHED  # the running one finished
    agent_0 = master.agent_ids()[0]
    assert agent_0 not in {master.launched_on[updates[job].backing_id] for job in [anywhere, *others]}
    assert [task for task, agent in master.launched_on.items() if agent == agent_0] == [updates[before].backing_id]

    stub.IgnoreNode(pb.IgnoreNodeRequest(name="agent-0.test", unignore=True))
    (update,) = collect_updates(stub, 1, after=max(u.sequence for u in updates.values()))
    assert update.job_id == pinned


def test_ignoring_an_unknown_node_is_not_found(service: RunningService) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        service.stub().IgnoreNode(pb.IgnoreNodeRequest(name="no-such-agent"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


def test_node_calls_through_a_gateway_reach_the_backend_with_the_node(service: RunningService, tmp_path: Path) -> None:
    local = start_service("local", tmp_path / "local", "--cores", "1")
    gateway = start_service("gateway", tmp_path / "gateway", "--backends", f"local={local.address},mesos={service.address}")
    try:
        with pytest.raises(grpc.RpcError) as caught:  # what backends that cannot steer jobs answer
            local.stub().IgnoreNode(pb.IgnoreNodeRequest(name="localhost"))
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
        stub = gateway.stub()
        stub.IgnoreNode(pb.IgnoreNodeRequest(name="agent-2.test"))  # local says UNIMPLEMENTED, mesos has it
        nodes = {node.name: node for node in service.stub().GetNodes(pb.GetNodesRequest()).nodes}
        assert nodes["agent-2.test"].state == "ignored"
        assert not stub.GetNodeInUse(pb.GetNodeInUseRequest(name="agent-2.test", backend="mesos")).in_use
        with pytest.raises(grpc.RpcError) as caught:
            stub.IgnoreNode(pb.IgnoreNodeRequest(name="no-such-agent"))
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetNodeInUse(pb.GetNodeInUseRequest(name="agent-2.test", backend="local"))
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
    finally:
        gateway.kill()
        local.kill()


def test_a_missing_working_directory_fails_the_command(service: RunningService, tmp_path: Path) -> None:
    # Mesos runs a task in its sandbox; the task's shell enters the directory first, and fails.
    (job,) = issue(service, spec("true", working_directory=str(tmp_path / "missing")))
    (update,) = collect_updates(service.stub(), 1)
    assert (update.job_id, update.exit_reason, update.exit_status) == (job, pb.EXIT_REASON_FAILED, 2)


def test_a_framework_removed_past_its_failover_timeout_starts_anew(tmp_path: Path, master: FakeMesosMaster) -> None:
    service = start_mesos_service(tmp_path / "service", master, "--mesos-failover-timeout", "1")
    try:
        (ran,) = issue(service, spec("sleep 300", cores=2, mesos=on_agent(0)))
        wait_until(lambda: ran in running(service), message="the job to run")
        (waited,) = issue(service, spec("true", cores=2, mesos=on_agent(0)))  # no room: never launched
        old_framework = master.connected_framework_ids()[0]
        service.kill()
        wait_until(lambda: not master.connected_framework_ids() and not master.running_task_ids(), message="the teardown")

        service = service.restart()
        updates = {update.job_id: update for update in collect_updates(service.stub(), 2)}
        assert updates[ran].exit_reason == pb.EXIT_REASON_MISSING  # killed with its framework
        assert updates[waited].exit_reason == pb.EXIT_REASON_FINISHED  # launched, for the first time
        assert master.subscriptions[-2]["id"] == {"value": old_framework}  # refused: "Framework has been removed"
        assert "id" not in master.subscriptions[-1] and master.connected_framework_ids() != [old_framework]
    finally:
        service.kill()


def test_gpus_are_offered_asked_for_and_limited(tmp_path: Path) -> None:
    agents = [AgentSpec("gpu.test", cpus=2, mem=2048, disk=10240, gpus=2), AgentSpec("cpu.test", cpus=2, mem=2048, disk=10240)]
    master = start_master(tmp_path / "mesos", agents)
    service = start_mesos_service(tmp_path / "service", master)
    try:
        (capacity,) = service.stub().GetCapabilities(pb.GetCapabilitiesRequest()).accelerators
        assert (capacity.accelerator.kind, capacity.accelerator.count) == ("gpu", 2)
        too_many = refusal(service, spec("true", accelerators=[pb.Accelerator(count=3, kind="gpu")]))
        assert isinstance(too_many, InsufficientSystemResources) and too_many.resource == "accelerators"
        (job,) = issue(service, spec("true", accelerators=[pb.Accelerator(count=2, kind="gpu")]))
        (update,) = collect_updates(service.stub(), 1)
        assert update.job_id == job and master.launched_on[update.backing_id] == master.agent_ids()[0]
    finally:
        service.kill()
        master.stop()


@pytest.mark.parametrize("mishap", ["refused", "dropped"])
def test_a_launch_mesos_never_made_waits_for_another_offer(service: RunningService, master: FakeMesosMaster, mishap: str) -> None:
    if mishap == "refused":
        master.refuse_next_accepts(1)  # answered 403: the master never acted on it
    else:
        master.drop_next_launches(1)  # TASK_DROPPED: "launching again may be successful"
    jobs = issue(service, spec("exit 6"), spec("true"))
    updates = collect_updates(service.stub(), 2)
    assert {update.job_id: update.exit_status for update in updates} == {jobs[0]: 6, jobs[1]: 0}
    assert sorted(master.launched) == sorted(update.backing_id for update in updates)  # each started once
    assert master.calls["ACCEPT"] >= 2
    assert not updates_within(service.stub(), 1.0, after=updates[-1].sequence)


def test_a_job_whose_launch_is_dropped_three_times_is_lost(service: RunningService, master: FakeMesosMaster) -> None:
    master.drop_next_launches(3)
    (job,) = issue(service, spec("true"))
    (update,) = collect_updates(service.stub(), 1)
    assert (update.job_id, update.exit_reason) == (job, pb.EXIT_REASON_LOST) and "TASK_DROPPED" in update.message
    assert not master.launched and master.calls["ACCEPT"] == 3
