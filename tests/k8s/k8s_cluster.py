"""An emulated cluster for the tests and the benchmark: the API server (k8s_apiserver.py), the
controller that runs pods on the local Docker engine (k8s_controller.py), a kubeconfig naming it,
nodes, and a small image built locally (no registry can be reached here).

(A module of its own, not conftest.py: bench/k8s_throughput.py uses it too.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from k8s_apiserver import ApiHttpServer, Cluster, kubeconfig, selector_matcher, serve  # noqa: E402
from harness import RunningService, start_service  # noqa: E402
from k8s_controller import Controller  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "batchgate-k8s-test:busybox"
NAMESPACE = "default"
NODE_CORES = 4
NODE_MEMORY = 8 * 1024**3


def node(name: str, *, cores: float = NODE_CORES, memory: int = NODE_MEMORY, disk: int = 100 * 1024**3, gpus: int = 0,
         labels: dict[str, str] | None = None, taints: Sequence[dict[str, str]] = ()) -> dict[str, object]:
    allocatable = {"cpu": str(cores), "memory": str(memory), "ephemeral-storage": str(disk), "pods": "110"}
    if gpus:
        allocatable["nvidia.com/gpu"] = str(gpus)
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": list(taints)},
        "status": {"allocatable": allocatable, "capacity": allocatable, "conditions": [{"type": "Ready", "status": "True"}]},
    }


_docker_up = False


def ensure_docker() -> None:
    """Start (and if need be install) the Docker engine; fail loudly if it will not come up."""
    global _docker_up
    if _docker_up:
        return
    done = subprocess.run([str(ROOT / "scripts" / "docker-up")], capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/docker-up failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    _docker_up = True


def busybox_binary(workdir: Path) -> Path:
    """Debian's busybox-static: the installed one, or the package's file fetched with apt."""
    installed = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "busybox-static"], capture_output=True, text=True)
    if installed.stdout.endswith("installed") and Path("/bin/busybox").exists():
        return Path("/bin/busybox")
    download = ["apt-get", "download", "-q", "busybox-static"]
    if subprocess.run(download, cwd=workdir, capture_output=True).returncode != 0:  # no package lists yet
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        subprocess.run(download, cwd=workdir, check=True, capture_output=True)
    (package,) = workdir.glob("busybox-static_*.deb")
    subprocess.run(["dpkg-deb", "-x", str(package), str(workdir / "extracted")], check=True)
    return workdir / "extracted" / "bin" / "busybox"


def ensure_image() -> str:
    """A busybox image on the Docker engine, imported from a tarball (no registry needed)."""
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode == 0:
        return IMAGE
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        root = workdir / "root"
        (root / "bin").mkdir(parents=True)
        (root / "tmp").mkdir(mode=0o1777)
        binary = root / "bin" / "busybox"
        shutil.copy(busybox_binary(workdir), binary)
        applets = subprocess.run([str(binary), "--list"], capture_output=True, text=True, check=True).stdout.split()
        for applet in applets:
            if applet != "busybox":
                os.symlink("busybox", root / "bin" / applet)
        tarball = workdir / "rootfs.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(tarball), "."], check=True)
        subprocess.run(["docker", "import", str(tarball), IMAGE], check=True, capture_output=True)
    return IMAGE


@dataclass
class EmulatedCluster:
    cluster: Cluster
    server: ApiHttpServer
    controller: Controller
    kubeconfig: Path

    @property
    def url(self) -> str:
        return self.server.url

    def job(self, name: str) -> dict[str, object] | None:
        return self.cluster.get("jobs", NAMESPACE, name)

    def jobs(self, selector: str = "") -> list[dict[str, object]]:
        matches = selector_matcher(selector)
        return [job for job in self.cluster.objects("jobs", NAMESPACE) if matches(job["metadata"].get("labels") or {})]

    def pods(self) -> list[dict[str, object]]:
        return self.cluster.objects("pods", NAMESPACE)


@contextlib.contextmanager
def emulated_cluster(directory: Path, *, nodes: Sequence[dict[str, object]] = (), shared_paths: Sequence[str] = ()) -> Iterator[EmulatedCluster]:
    ensure_docker()
    ensure_image()
    cluster = Cluster()
    for spec in nodes or [node("node-1")]:
        cluster.create("nodes", "", spec)
    server, _ = serve(cluster)
    controller = Controller(cluster, shared_paths=shared_paths)
    controller.start()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "kubeconfig"
    config.write_text(kubeconfig(server.url, NAMESPACE))
    try:
        yield EmulatedCluster(cluster, server, controller, config)
    finally:
        server.stop()
        controller.stop()


def k8s_service_args(kubeconfig: Path, *more: str) -> list[str]:
    """Flags for a service on the emulated cluster. Its containers run as the tests' own user
    (root here: --k8s-run-as-user 0 lifts runAsNonRoot), so jobs can write the files the tests
    read in their temporary directories, mounted into every container."""
    return [
        "--k8s-kubeconfig", str(kubeconfig),
        "--k8s-image", IMAGE,
        "--k8s-run-as-user", str(os.getuid()),
        "--k8s-kill-grace", "1",
        *more,
    ]


def start_k8s_service(state_dir: Path, kubeconfig: Path, *more: str) -> RunningService:
    return start_service("k8s", state_dir, *k8s_service_args(kubeconfig, *more))
