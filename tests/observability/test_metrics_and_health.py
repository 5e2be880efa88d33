"""Every service answers health checks, serves reflection, and exports Prometheus metrics."""

from __future__ import annotations

import urllib.request

from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from harness import RunningService, collect_updates, spec
from prometheus_client.parser import text_string_to_metric_families

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
