"""Fixtures for the Kubernetes backend's tests: one emulated cluster (a plain node and a spot node
with GPUs) and one k8s service on it for the module; tests that restart a service start their own."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import RunningService  # noqa: E402
from k8s_cluster import EmulatedCluster, emulated_cluster, node, start_k8s_service  # noqa: E402

SPOT_GPU_NODE = node(
    "spot-gpu-1",
    cores=8,
    memory=16 * 1024**3,
    gpus=2,
    labels={"nvidia.com/gpu.product": "tesla-t4", "eks.amazonaws.com/capacityType": "SPOT"},
    taints=[{"key": "cloud.google.com/gke-preemptible", "value": "true", "effect": "NoSchedule"}],
)
START_TIMEOUT = "2"  # seconds a container may fail to start before its job is ERROR


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedCluster]:
    directory = tmp_path_factory.mktemp("cluster")
    with emulated_cluster(directory, nodes=[node("node-1"), SPOT_GPU_NODE], shared_paths=[tempfile.gettempdir()]) as running:
        yield running


@pytest.fixture(scope="module")
def service(cluster: EmulatedCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    running = start_k8s_service(tmp_path_factory.mktemp("k8s"), cluster.kubeconfig, "--k8s-start-timeout", START_TIMEOUT)
    yield running
    running.kill()
