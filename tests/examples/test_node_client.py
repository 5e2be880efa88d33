"""examples/node/issue-and-follow.js against a live service: what it prints is what the service did."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import status_pb2

from batchgate.v1 import batchgate_pb2 as pb
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc
from example_tools import EXAMPLES, INSTALL_HINT, installed_tool
from harness import collect_updates

NODE_EXAMPLE = EXAMPLES / "node"
# The folder holding google/rpc/*.proto: googleapis-common-protos, which batchgate depends on.
GOOGLEAPIS_PROTOS = Path(status_pb2.__file__).parents[2]
ISSUED_LINE = re.compile(r"issued jobs (?P<ids>[\d ]+) in job set (?P<job_set>\S+)")
UPDATE_LINE = re.compile(
    r"seq=(?P<sequence>\d+) job=(?P<job_id>\d+) reason=(?P<reason>\w+) exit_status=(?P<exit_status>\d+) wall_time=\S+"
)


@pytest.fixture
def stub(service_address: str) -> Iterator[pb_grpc.BatchSystemStub]:
    with grpc.insecure_channel(service_address) as channel:
        yield pb_grpc.BatchSystemStub(channel)


def run_example(*arguments: str, details: bool = True) -> subprocess.CompletedProcess[str]:
    node = installed_tool("node")
    if not (NODE_EXAMPLE / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail(f"the Node example's packages are not installed: {INSTALL_HINT}")
    environment = {key: value for key, value in os.environ.items() if key != "GOOGLEAPIS_PROTOS"}
    if details:
        environment["GOOGLEAPIS_PROTOS"] = str(GOOGLEAPIS_PROTOS)
    command = [node, str(NODE_EXAMPLE / "issue-and-follow.js"), *arguments]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=90)


def error_details(stderr: str) -> dict[str, dict[str, object]]:
    """The decoded details the example printed, by message type ("ErrorInfo {...}" lines)."""
    found = re.findall(r"^  (\w+) (\{.*\})$", stderr, re.MULTILINE)
    return {type_name: json.loads(fields) for type_name, fields in found}


def test_issues_the_jobs_and_prints_each_update_once(service_address: str, stub: pb_grpc.BatchSystemStub) -> None:
    run = run_example("--address", service_address, "--count", "3", "--cores", "0.5", 'echo "a b"; exit 3')

    assert run.returncode == 0, run.stderr
    first_line, *update_lines = run.stdout.splitlines()
    issued = ISSUED_LINE.fullmatch(first_line)
    assert issued is not None, run.stdout
    job_ids = issued["ids"].split()
    printed = [UPDATE_LINE.fullmatch(line) for line in update_lines]
    assert all(printed), run.stdout
    assert sorted(match["job_id"] for match in printed) == sorted(job_ids)
    # What it printed is what the service recorded for that job set.
    recorded = collect_updates(stub, 3, job_set=issued["job_set"])
    printed_fields = {(int(m["sequence"]), int(m["job_id"]), m["reason"], int(m["exit_status"])) for m in printed}
    recorded_fields = {(u.sequence, u.job_id, pb.ExitReason.Name(u.exit_reason), u.exit_status) for u in recorded}
    assert printed_fields == recorded_fields
    assert {update.exit_status for update in recorded} == {3}  # the command ran as given, through a shell


def test_variables_reach_the_run_s_job_set_and_a_wall_time_ends_in_timelimit(service_address: str) -> None:
    waits_for_greeting = 'test "$GREETING" = "hi there" && sleep 30'
    run = run_example("--address", service_address, "--env", "GREETING=hi there", "--wall-time", "1", waits_for_greeting)
    assert run.returncode == 0, run.stderr
    (update,) = [UPDATE_LINE.match(line) for line in run.stdout.splitlines()[1:]]
    assert update is not None and update["reason"] == "EXIT_REASON_TIMELIMIT", run.stdout

    # Another run is another job set: the variable is not there, and the test fails at once.
    run = run_example("--address", service_address, waits_for_greeting)
    (update,) = [UPDATE_LINE.match(line) for line in run.stdout.splitlines()[1:]]
    assert update is not None and (update["reason"], update["exit_status"]) == ("EXIT_REASON_FAILED", "1"), run.stdout


def test_a_job_too_large_reports_resource_exhausted_with_its_error_info(
    service_address: str, stub: pb_grpc.BatchSystemStub
) -> None:
    run = run_example("--address", service_address, "--count", "2", "--cores", "64", "true")

    assert run.returncode == 1
    assert run.stderr.startswith("error: RESOURCE_EXHAUSTED: "), run.stderr
    info = error_details(run.stderr)["ErrorInfo"]
    capabilities = stub.GetCapabilities(pb.GetCapabilitiesRequest())
    assert info["reason"] == "INSUFFICIENT_RESOURCES"
    metadata = info["metadata"]
    assert (metadata["resource"], metadata["requested"]) == ("cores", "64.0")
    # The backend that refused is the service itself, or one of a gateway's backends.
    most_cores = {backend.backend: backend.max_cores for backend in (capabilities, *capabilities.backends)}
    assert float(metadata["available"]) == most_cores[metadata["backend"]]
    assert not stub.ListIssuedJobs(pb.ListIssuedJobsRequest()).job_ids  # all or none


def test_a_malformed_spec_reports_the_field_from_bad_request(service_address: str) -> None:
    run = run_example("--address", service_address, "--cores=-1", "true")

    assert run.returncode == 1
    assert run.stderr.startswith("error: INVALID_ARGUMENT: specs[0].cores: "), run.stderr
    violations = error_details(run.stderr)["BadRequest"]["field_violations"]
    assert [violation["field"] for violation in violations] == ["specs[0].cores"]


def test_without_the_google_protos_it_still_reports_the_status(service_address: str) -> None:
    run = run_example("--address", service_address, "--cores", "64", "true", details=False)

    assert run.returncode == 1
    assert run.stderr.startswith("error: RESOURCE_EXHAUSTED: "), run.stderr
    assert "GOOGLEAPIS_PROTOS" in run.stderr and not error_details(run.stderr)


def test_an_unreachable_service_fails_with_unavailable(tmp_path: Path) -> None:
    # A Unix socket path that nothing listens on: refused at once, on no port anyone may own.
    run = run_example("--address", f"unix:{tmp_path / 'nobody.sock'}", "true")

    assert run.returncode == 1
    assert run.stderr.startswith("error: UNAVAILABLE: "), run.stderr


def test_bad_arguments_print_the_usage() -> None:
    run = run_example("--count", "0", "true")

    assert run.returncode == 2
    assert "--count must be a whole number >= 1" in run.stderr and "usage:" in run.stderr


def test_output_prints_each_jobs_stdout_and_stderr(service_address: str) -> None:
    run = run_example("--address", service_address, "--count", "2", "--output", 'echo "a b"; echo oops >&2')

    assert run.returncode == 0, run.stderr
    job_ids = ISSUED_LINE.fullmatch(run.stdout.splitlines()[0])["ids"].split()  # type: ignore[index]
    printed = dict(re.findall(r"^job=(\d+ std(?:out|err))=(.*)$", run.stdout, re.MULTILINE))
    for job_id in job_ids:
        assert json.loads(printed[f"{job_id} stdout"]) == "a b\n"
        assert json.loads(printed[f"{job_id} stderr"]) == "oops\n"


def test_output_of_a_silent_job_is_empty_not_an_error(service_address: str) -> None:
    run = run_example("--address", service_address, "--output", "true")

    assert run.returncode == 0, run.stderr
    assert re.search(r'^job=\d+ stdout=""$', run.stdout, re.MULTILINE), run.stdout
    assert re.search(r'^job=\d+ stderr=""$', run.stdout, re.MULTILINE), run.stdout
