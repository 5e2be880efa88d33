"""The contract suite's Kubernetes target: a real `batchgate serve k8s` talking, through the
official client, to the emulated API server whose pods run as containers on the local Docker engine.

Register them in tests/contract/targets.py with
    from k8s.contract_target import gateway_k8s_target, k8s_target
    TARGETS["k8s"] = k8s_target
    TARGETS["gateway-k8s"] = gateway_k8s_target
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import start_service  # noqa: E402
from k8s_cluster import NODE_CORES, NODE_MEMORY, emulated_cluster, start_k8s_service  # noqa: E402
from targets import LOCAL_ARGS, Target  # noqa: E402


@contextlib.contextmanager
def k8s_target(tmp_path: Path) -> Iterator[Target]:
    with emulated_cluster(tmp_path / "cluster", shared_paths=[tempfile.gettempdir()]) as cluster:
        target = Target(
            "k8s",
            start_k8s_service(tmp_path / "k8s", cluster.kubeconfig),
            max_cores=NODE_CORES,
            max_memory=NODE_MEMORY,
            checks_working_directory=False,  # the container runtime makes a missing workingDir
            keeps_output=True,  # the pod log (Driver.output)
            merges_output=True,  # stdout and stderr as one log
        )
        try:
            yield target
        finally:
            target.close()


@contextlib.contextmanager
def gateway_k8s_target(tmp_path: Path) -> Iterator[Target]:
    """A gateway in front of the k8s backend (its default, named first) and a local one; clients
    talk to the gateway, and restart() restarts it."""
    with emulated_cluster(tmp_path / "cluster", shared_paths=[tempfile.gettempdir()]) as cluster:
        k8s = start_k8s_service(tmp_path / "k8s", cluster.kubeconfig)
        local = start_service("local", tmp_path / "local", *LOCAL_ARGS)
        try:
            backends = f"k8s={k8s.address},local={local.address}"
            gateway = start_service("gateway", tmp_path / "gateway", "--backends", backends)
            target = Target(
                "gateway-k8s", gateway, max_cores=NODE_CORES, max_memory=NODE_MEMORY, checks_working_directory=False, keeps_output=True, merges_output=True
            )
            try:
                yield target
            finally:
                target.close()
        finally:
            local.kill()
            k8s.kill()
