"""compose.yaml on a real Docker engine: `scripts/compose up` builds everything with no registry and
runs the gateway, the local backend and Prometheus, at the addresses the README gives."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import collect_updates, spec, wait_until

from batchgate.v1 import batchgate_pb2 as pb
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = "127.0.0.1:50051"
PROMETHEUS = "127.0.0.1:9090"


def compose(project: str, *args: str, timeout: float = 540) -> None:
    done = subprocess.run([str(ROOT / "scripts" / "compose"), "-p", project, *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"scripts/compose {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture
def stack() -> Iterator[str]:
    project = f"batchgate-test-{uuid.uuid4().hex[:8]}"
    compose(project, "up", "-d", "--build")
    try:
        yield project
    finally:
        compose(project, "down", "--volumes", timeout=120)


def serving(channel: grpc.Channel) -> bool:
    try:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
    except grpc.RpcError:
        return False
    return answer.status == health_pb2.HealthCheckResponse.SERVING


def scraped_services() -> set[str]:
    query = urllib.parse.urlencode({"query": 'up{job="batchgate"} == 1'})
    try:
        with urllib.request.urlopen(f"http://{PROMETHEUS}/api/v1/query?{query}", timeout=5) as response:
            answer = json.loads(response.read())
    except OSError:
        return set()
    return {series["metric"]["service"] for series in answer["data"]["result"]}


@pytest.mark.timeout(900)
def test_compose_runs_jobs_in_containers_keeps_them_across_a_restart_and_is_scraped(stack: str) -> None:
    channel = grpc.insecure_channel(GATEWAY)
    wait_until(lambda: serving(channel), 60, 0.5, message="the gateway in its container to serve")
    stub = pb_grpc.BatchSystemStub(channel)
    # /.dockerenv exists only inside a Docker container: the job ran in the local backend's.
    (job,) = stub.IssueJobs(pb.IssueJobsRequest(specs=[spec("test -f /.dockerenv")])).job_ids
    (update,) = collect_updates(stub, 1)
    assert (update.job_id, update.exit_reason, update.exit_status) == (job, pb.EXIT_REASON_FINISHED, 0)

    compose(stack, "restart", timeout=120)  # SIGTERM and start again: the state is in volumes
    wait_until(lambda: serving(channel), 60, 0.5, message="the gateway to serve again")
    (again,) = collect_updates(stub, 1)
    assert again == update
    (later,) = stub.IssueJobs(pb.IssueJobsRequest(specs=[spec("true")])).job_ids
    assert later == job + 1  # ids are never reused

    wait_until(lambda: scraped_services() >= {"gateway", "local"}, 60, 1, message="Prometheus to scrape both services")
    assert len(alert_rules()) == 6  # deploy/prometheus/alerts.yml, loaded
    channel.close()


def alert_rules() -> list[str]:
    with urllib.request.urlopen(f"http://{PROMETHEUS}/api/v1/rules?type=alert", timeout=5) as response:
        groups = json.loads(response.read())["data"]["groups"]
    return [rule["name"] for group in groups for rule in group["rules"]]
