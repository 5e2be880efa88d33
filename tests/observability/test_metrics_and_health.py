"""Every service answers health checks, serves reflection, and exports Prometheus metrics."""

from __future__ import annotations

import socket
import sqlite3
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from harness import RunningService, collect_updates, spec, start_service, wait_until
from prometheus_client.parser import text_string_to_metric_families

from batchgate.errors import AcquisitionTimeoutException, from_rpc_error
from batchgate.v1 import batchgate_pb2 as pb


def scrape(service: RunningService) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://{service.metrics_address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_jobs_by_backend_and_exit_reason(local_service: RunningService) -> None:
    stub = local_service.stub()
    stub.IssueJobs(pb.IssueJobsRequest(specs=[spec("true"), spec("exit 2")]))
    collect_updates(stub, 2)
    metrics = scrape(local_service)
    assert metrics[("batchgate_jobs_issued_total", (("backend", "local"),))] == 2
    assert metrics[("batchgate_jobs_ended_total", (("backend", "local"), ("exit_reason", "FINISHED")))] == 1
    assert metrics[("batchgate_jobs_ended_total", (("backend", "local"), ("exit_reason", "FAILED")))] == 1
    assert metrics[("batchgate_jobs_failed_total", (("backend", "local"),))] == 1
    assert metrics[("batchgate_job_wall_time_seconds_count", (("backend", "local"),))] == 2
    assert metrics[("batchgate_jobs", (("backend", "local"), ("state", "running")))] == 0
    issued = (("backend", "local"), ("code", "OK"), ("method", "IssueJobs"))
    assert metrics[("batchgate_grpc_requests_total", issued)] == 1


def test_health_and_reflection(local_service: RunningService) -> None:
    channel = local_service.channel()
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", "batchgate.v1.BatchSystem"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    (answer,) = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    names = {service.name for service in answer.list_services_response.service}
    assert {"batchgate.v1.BatchSystem", "grpc.health.v1.Health"} <= names


def test_a_store_that_cannot_be_written_is_counted_and_the_service_recovers(local_service: RunningService) -> None:
    stub = local_service.stub()
    holder = sqlite3.connect(local_service.state_dir / "local.sqlite", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another process holding the store's lock
        with pytest.raises(grpc.RpcError) as caught:
            stub.IssueJob(pb.IssueJobRequest(spec=spec("true")), timeout=60)
        assert isinstance(from_rpc_error(caught.value), AcquisitionTimeoutException)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    metrics = scrape(local_service)
    assert metrics[("batchgate_store_errors_total", (("backend", "local"),))] == 1
    stub.IssueJob(pb.IssueJobRequest(spec=spec("true")))
    assert len(collect_updates(stub, 1)) == 1


def test_a_gateway_says_which_backends_it_reaches(local_service: RunningService, tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{unused.getsockname()[1]}"
    gateway = start_service("gateway", tmp_path / "gateway", "--backends", f"local={local_service.address},gone={nowhere}")
    try:
        up = ("batchgate_backend_up", (("backend", "gateway"), ("target", "local")))
        wait_until(lambda: scrape(gateway).get(up) == 1, message="the gateway to reach its local backend")
        assert scrape(gateway)[("batchgate_backend_up", (("backend", "gateway"), ("target", "gone")))] == 0
    finally:
        gateway.kill()
