"""GetJobOutput on Mesos: each task's stdout and stderr read from its sandbox through its agent's
`/state` and files API. The fake master's agents (fake_agent.py) serve the real sandboxes their
tasks' processes write, as a Mesos agent does."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_master import FakeMesosMaster
from harness import RunningService, collect_updates, job_output, job_output_refused, spec, start_service, wait_until
from mesos_cluster import start_master, start_mesos_service

from batchgate.errors import NoOutput
from batchgate.v1 import batchgate_pb2 as pb

STDOUT, STDERR = pb.OUTPUT_STREAM_STDOUT, pb.OUTPUT_STREAM_STDERR


@pytest.fixture
def service(tmp_path: Path, master: FakeMesosMaster) -> Iterator[RunningService]:
    running = start_mesos_service(tmp_path / "service", master)
    yield running
    running.kill()


def issue(service: RunningService, job: pb.JobSpec) -> int:
    return service.stub().IssueJob(pb.IssueJobRequest(spec=job)).job_id


def finished(service: RunningService, job_id: int, after: int = 0) -> pb.UpdatedJob:
    (update,) = collect_updates(service.stub(), 1, after=after)
    assert update.job_id == job_id
    return update


def task_of(master: FakeMesosMaster, job_id: int) -> str:
    return next(task_id for task_id in master.launched if task_id.endswith(f"-{job_id}"))


def on_agent(index: int) -> pb.MesosOptions:
    return pb.MesosOptions(attributes={"name": f"agent-{index}"})


def test_following_a_running_job_streams_its_output_until_it_ends(service: RunningService, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    # More than one read of the files API (16 pages) before the gate, and more after it.
    command = f"head -c 100000 /dev/zero | tr '\\0' a; echo; while [ ! -e {gate} ]; do sleep 0.1; done; echo ended"
    job_id = issue(service, spec(command))
    stream = service.stub().GetJobOutput(pb.GetJobOutputRequest(job_id=job_id, follow=True), timeout=60)
    received = b""
    while len(received) < 100_001:
        received += next(stream).data
    assert received == b"a" * 100_000 + b"\n"
    assert job_id in service.stub().ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running
    gate.touch()
    received += b"".join(response.data for response in stream)  # ends once the job has
    assert received == b"a" * 100_000 + b"\nended\n"
    assert finished(service, job_id).exit_reason == pb.EXIT_REASON_FINISHED


def test_a_job_not_launched_yet_has_no_output_yet_and_a_follower_waits_for_it(service: RunningService) -> None:
    holder = issue(service, spec("sleep 300", cores=2, mesos=on_agent(0)))
    wait_until(lambda: holder in service.stub().ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running, message="the holder to run")
    waiting = issue(service, spec("echo at last", cores=2, mesos=on_agent(0)))
    error = job_output_refused(service.stub(), waiting)
    assert isinstance(error, NoOutput) and "yet" in error.message, error
    followed: list[bytes] = []
    follower = threading.Thread(target=lambda: followed.append(job_output(service.stub(), waiting, follow=True)))
    follower.start()
    service.stub().KillJobs(pb.KillJobsRequest(job_ids=[holder]))
    follower.join(timeout=60)
    assert followed == [b"at last\n"]


def test_tail_bytes_reads_the_end_across_reads(service: RunningService) -> None:
    job_id = issue(service, spec("seq 1 30000"))
    assert finished(service, job_id).exit_reason == pb.EXIT_REASON_FINISHED
    everything = "".join(f"{number}\n" for number in range(1, 30001)).encode()
    assert len(everything) > 2 * 65536  # several reads of the files API
    assert job_output(service.stub(), job_id) == everything
    assert job_output(service.stub(), job_id, tail_bytes=6) == b"30000\n"
    assert job_output(service.stub(), job_id, tail_bytes=100_000) == everything[-100_000:]
    assert job_output(service.stub(), job_id, tail_bytes=10**9) == everything
    assert job_output(service.stub(), job_id, tail_bytes=12, follow=True) == b"29999\n30000\n"  # ended: the tail, then the end


def test_stdout_and_stderr_are_kept_apart_byte_for_byte(service: RunningService) -> None:
    # Control characters, quotes, backslashes, slashes, DEL, UTF-8 and bytes that are not UTF-8
    # come back as written.
    command = "for i in 1 2 3; do echo out $i; echo err $i >&2; done; printf '\\001\\042\\134/\\177 \\303\\251 \\377\\n'"
    job_id = issue(service, spec(command))
    finished(service, job_id)
    assert job_output(service.stub(), job_id) == b'out 1\nout 2\nout 3\n\x01"\\/\x7f \xc3\xa9 \xff\n'
    assert job_output(service.stub(), job_id, STDERR) == b"err 1\nerr 2\nerr 3\n"


def test_a_failed_jobs_update_quotes_the_end_of_its_stderr(service: RunningService) -> None:
    job_id = issue(service, spec("echo progress 1; echo 'reading input.csv' >&2; echo 'input.csv: no such file' >&2; echo done; exit 3"))
    update = finished(service, job_id)
    assert (update.exit_reason, update.exit_status) == (pb.EXIT_REASON_FAILED, 3)
    assert update.message.startswith("TASK_FAILED: Command exited with status 3")  # Mesos' words first
    assert update.message.endswith("stderr ends:\nreading input.csv\ninput.csv: no such file")
    assert "progress" not in update.message and "done" not in update.message  # stdout is not quoted
    signalled = issue(service, spec("echo 'out of patience' >&2; kill -9 $$"))
    update = finished(service, signalled, after=update.sequence)
    assert (update.exit_reason, update.exit_status) == (pb.EXIT_REASON_FAILED, 137)
    assert update.message.endswith("\nout of patience")


def test_a_garbage_collected_sandbox_says_so(service: RunningService, master: FakeMesosMaster) -> None:
    job_id = issue(service, spec("echo kept; echo noted >&2"))
    finished(service, job_id)
    assert job_output(service.stub(), job_id) == b"kept\n"
    master.collect_sandbox(task_of(master, job_id))
    for follow in (False, True):  # never an empty success, nor a follower left waiting
        error = job_output_refused(service.stub(), job_id, follow=follow)
        assert isinstance(error, NoOutput) and "sandbox" in error.message and "garbage-collect" in error.message, error


def test_a_sandbox_the_agent_no_longer_lists_is_read_at_its_virtual_path(tmp_path: Path) -> None:
    master = start_master(tmp_path / "mesos", max_completed_executors=1)  # Mesos' default: 150
    service = start_mesos_service(tmp_path / "service", master)
    try:
        older = issue(service, spec("echo older", mesos=on_agent(0)))
        update = finished(service, older)
        newer = issue(service, spec("echo newer", mesos=on_agent(0)))
        finished(service, newer, after=update.sequence)
        state = get(master.agent_address(master.launched_on[task_of(master, older)]), "/state")
        listed = [e["id"] for f in state["frameworks"] + state["completed_frameworks"] for e in f["completed_executors"]]
        assert listed == [task_of(master, newer)]  # the older one is forgotten, not collected
        assert job_output(service.stub(), older) == b"older\n"
        master.collect_sandbox(task_of(master, older))
        error = job_output_refused(service.stub(), older)
        assert isinstance(error, NoOutput) and "garbage-collect" in error.message, error
    finally:
        service.kill()
        master.stop()


def test_the_output_of_a_job_on_a_removed_agent_is_gone_with_it(service: RunningService, master: FakeMesosMaster) -> None:
    job_id = issue(service, spec("echo here; sleep 300", mesos=on_agent(3)))
    wait_until(lambda: job_id in service.stub().ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running, message="the job to run")
    wait_until(lambda: job_output(service.stub(), job_id) == b"here\n", message="the job's first line")
    master.remove_agent(master.agent_ids()[3])
    assert finished(service, job_id).exit_reason == pb.EXIT_REASON_LOST
    error = job_output_refused(service.stub(), job_id)
    assert isinstance(error, NoOutput) and "among the master's agents" in error.message, error


def test_output_of_jobs_that_ended_before_a_restart(tmp_path: Path, master: FakeMesosMaster) -> None:
    service = start_mesos_service(tmp_path / "service", master)
    try:
        job_id = issue(service, spec("echo before the restart; echo warned >&2"))
        finished(service, job_id)
        service.kill()
        service = service.restart()  # knows nothing of the agent it ran on: asks the agents
        assert job_output(service.stub(), job_id) == b"before the restart\n"
        assert job_output(service.stub(), job_id, STDERR, tail_bytes=7) == b"warned\n"
    finally:
        service.kill()


def test_output_through_a_gateway(tmp_path: Path, service: RunningService) -> None:
    gateway = start_service("gateway", tmp_path / "gateway", "--backends", f"mesos={service.address}")
    try:
        stub = gateway.stub()
        job_id = stub.IssueJob(pb.IssueJobRequest(spec=spec("echo via the gateway; echo 'broke here' >&2; exit 2"))).job_id
        (update,) = collect_updates(stub, 1)
        assert (update.job_id, update.exit_status) == (job_id, 2) and update.message.endswith("\nbroke here")
        for stream, written in ((STDOUT, b"via the gateway\n"), (STDERR, b"broke here\n")):
            request = pb.GetJobOutputRequest(job_id=job_id, stream=stream)
            assert b"".join(response.data for response in stub.GetJobOutput(request, timeout=30)) == written
    finally:
        gateway.kill()


def test_the_fake_agents_files_api_answers_as_mesos_documents(service: RunningService, master: FakeMesosMaster) -> None:
    """The fake's side of the wire, as src/files/files.cpp serves /files/read."""
    job_id = issue(service, spec("printf 0123456789"))
    finished(service, job_id)
    task_id = task_of(master, job_id)
    agent = master.agent_address(master.launched_on[task_id])
    directory = str(sandbox_of(master, task_id))
    stdout = directory + "/stdout"
    assert get(agent, "/files/read", path=stdout, offset=-1) == {"offset": 10, "data": ""}  # the size
    assert get(agent, "/files/read", path=stdout, offset=3, length=4) == {"offset": 3, "data": "3456"}
    assert get(agent, "/files/read", path=stdout, offset=8) == {"offset": 8, "data": "89"}  # to the end
    assert get(agent, "/files/read", path=stdout, offset=50) == {"offset": 50, "data": ""}
    latest = f"/frameworks/{master.connected_framework_ids()[0]}/executors/{task_id}/runs/latest"  # the virtual path
    assert get(agent, "/files/read", path=f"{latest}/stdout", offset=0) == {"offset": 0, "data": "0123456789"}
    assert http_error(agent, "/files/read", path=stdout, offset=-2) == 400
    assert http_error(agent, "/files/read", path=directory) == 400  # a directory
    assert http_error(agent, "/files/read", path=directory + "/../../../stdout") == 400  # out of the sandbox
    assert http_error(agent, "/files/read", path=directory + "/nothing") == 404
    assert http_error(agent, "/files/read", path="/etc/passwd") == 404  # not served


def get(agent: str, endpoint: str, **query: object) -> Any:
    url = f"http://{agent}{endpoint}?" + urllib.parse.urlencode(query)
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def http_error(agent: str, endpoint: str, **query: object) -> int:
    with pytest.raises(urllib.error.HTTPError) as caught:
        get(agent, endpoint, **query)
    return caught.value.code


def test_binary_output_bigger_than_a_read_comes_back_whole(service: RunningService, master: FakeMesosMaster) -> None:
    job_id = issue(service, spec("head -c 300000 /dev/urandom > blob; cat blob; cat blob >&2"))
    finished(service, job_id)
    blob = (sandbox_of(master, task_of(master, job_id)) / "blob").read_bytes()
    assert len(blob) == 300_000
    assert job_output(service.stub(), job_id) == blob and job_output(service.stub(), job_id, STDERR) == blob


def sandbox_of(master: FakeMesosMaster, task_id: str) -> Path:
    state = get(master.agent_address(master.launched_on[task_id]), "/state")
    frameworks = state["frameworks"] + state["completed_frameworks"]
    (directory,) = [e["directory"] for f in frameworks for e in f["executors"] + f["completed_executors"] if e["id"] == task_id]
    return Path(directory)
