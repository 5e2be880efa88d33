"""A local AWS Batch for the tests: moto's server in its own process, running each job as a real
container of a locally built image on the Docker engine that scripts/docker-up starts.

What moto 5.2.5 does, read in its source (moto/batch/models.py) and seen here:
- a job runs `docker run` of the job definition's image with the overridden command and
  environment, and the definition's volumes as bind mounts; no resource limits, no init;
- a job's container exit code is in ListJobs' summaries, not in DescribeJobs;
- TerminateJob (and CancelJob, before the job starts) kills the container: FAILED, 137, with the
  reason given; a job past its timeout is FAILED with neither exit code nor reason;
- a job's container output reaches its CloudWatch Logs only once the container has exited: the
  server is started through moto_live_logs.py, which publishes it as AWS does, while it runs;
- the image must exist locally (no registry is reachable here), and containers need the host's
  network (dockerd runs without a bridge): MOTO_DOCKER_NETWORK_MODE=host.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

IMAGE = "batchgate-awsbatch-test:busybox"
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static: one static binary, no libraries
REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
QUEUE = "batchgate-test-queue"
DEFINITION = "batchgate-test-definition"
INSTANCE_TYPE = "m5.large"  # 2 vCPUs, 8 GiB: what the service reports as one job's most
MAX_VCPUS = 64
SERVER_LABEL = "batchgate.moto-server"  # on each job's container: the pid of the moto that ran it (moto_live_logs.py)
# moto enforces any timeout; AWS's floor of 60 s would make every wall-time test a minute long.
TEST_ARGS = ("--awsbatch-minimum-timeout", "1")


def ensure_docker() -> None:
    """The Docker engine scripts/test starts (scripts/docker-up); started here if it is not up."""
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        script = Path(__file__).resolve().parents[2] / "scripts" / "docker-up"
        subprocess.run([str(script)], check=True, capture_output=True)


def build_image() -> str:
    """A busybox image made locally from the host's static busybox (`docker import`)."""
    ensure_docker()
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, check=False).returncode == 0:
        return IMAGE
    if not BUSYBOX.exists():
        raise RuntimeError(f"{BUSYBOX} is missing: install Debian's busybox-static (scripts/test does)")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "tmp", "etc", "root"):
            entry = tarfile.TarInfo(directory)
            entry.type, entry.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(entry)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in applets:
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
        passwd = b"root:x:0:0:root:/root:/bin/sh\n"
        entry = tarfile.TarInfo("etc/passwd")
        entry.size = len(passwd)
        tar.addfile(entry, io.BytesIO(passwd))
    subprocess.run(["docker", "import", "-", IMAGE], input=buffer.getvalue(), capture_output=True, check=True)
    return IMAGE


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class MotoBatch:
    endpoint: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, service: str = "batch") -> Any:
        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        ).client(service, endpoint_url=self.endpoint)

    def service_args(self, *extra: str) -> list[str]:
        """The awsbatch service's flags for this endpoint, queue and job definition."""
        return [
            "--awsbatch-endpoint-url",
            self.endpoint,
            "--awsbatch-region",
            REGION,
            "--awsbatch-job-queue",
            QUEUE,
            "--awsbatch-job-definition",
            DEFINITION,
            "--awsbatch-poll-interval",
            "0.3",
            *extra,
        ]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_moto(port: int | None = None, log_dir: Path | None = None) -> MotoBatch:
    port = port or free_port()
    log_path = (log_dir or Path("/tmp")) / f"moto-{port}.log"
    environment = {**os.environ, **CREDENTIALS, "MOTO_DOCKER_NETWORK_MODE": "host"}
    # moto_server, with its jobs' output in its CloudWatch Logs as they write it (moto_live_logs.py)
    server = [sys.executable, str(Path(__file__).with_name("moto_live_logs.py"))]
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [*server, "-H", "127.0.0.1", "-p", str(port)], stdout=log_file, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
    moto = MotoBatch(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + 90  # importing moto takes seconds, many on a loaded machine
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return moto
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                moto.stop()
                raise RuntimeError(f"moto_server did not start:\n{log_path.read_text(errors='replace')}") from None
            time.sleep(0.1)


def set_up_batch(moto: MotoBatch, image: str, host_paths: tuple[str, ...] = ("/tmp",)) -> None:
    """An IAM role, a managed compute environment in the default VPC, a queue, and a job
    definition of `image` that mounts `host_paths` (as Toil's AWS Batch system does /tmp)."""
    iam = moto.client("iam")
    role = iam.create_role(RoleName="batchgate-test", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    profile = iam.create_instance_profile(InstanceProfileName="batchgate-test")["InstanceProfile"]["Arn"]
    ec2 = moto.client("ec2")
    subnets = [subnet["SubnetId"] for subnet in ec2.describe_subnets()["Subnets"]][:1]
    groups = [group["GroupId"] for group in ec2.describe_security_groups()["SecurityGroups"]][:1]
    batch = moto.client()
    batch.create_compute_environment(
        computeEnvironmentName="batchgate-test-env",
        type="MANAGED",
        state="ENABLED",
        computeResources={
            "type": "EC2",
            "minvCpus": 0,
            "maxvCpus": MAX_VCPUS,
            "desiredvCpus": 0,
            "instanceTypes": [INSTANCE_TYPE],
            "instanceRole": profile,
            "subnets": subnets,
            "securityGroupIds": groups,
        },
        serviceRole=role,
    )
    batch.create_job_queue(
        jobQueueName=QUEUE, state="ENABLED", priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "batchgate-test-env"}]
    )
    register_definition(moto, DEFINITION, image, {path: path for path in host_paths})


def register_definition(moto: MotoBatch, name: str, image: str, mounts: dict[str, str], environment: dict[str, str] | None = None) -> None:
    """A job definition of `image` with `mounts` (container path -> host path) and `environment`."""
    moto.client().register_job_definition(
        jobDefinitionName=name,
        type="container",
        containerProperties={
            "image": image,
            "command": ["/bin/true"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "64"}],
            "environment": [{"name": key, "value": value} for key, value in (environment or {}).items()],
            "volumes": [{"name": f"mnt{index}", "host": {"sourcePath": host}} for index, host in enumerate(mounts.values())],
            "mountPoints": [
                {"sourceVolume": f"mnt{index}", "containerPath": path, "readOnly": False} for index, path in enumerate(mounts)
            ],
        },
    )


def remove_containers(moto: MotoBatch) -> None:
    """The containers a stopped moto left behind (its own alone: other motos may share the engine)."""
    label = f"{SERVER_LABEL}={moto.process.pid}"
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={label}"], capture_output=True, text=True, check=False).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)


@contextmanager
def moto_batch(log_dir: Path | None = None, port: int | None = None) -> Iterator[MotoBatch]:
    """A running moto with the test queue and job definition; stopped (and its containers
    removed) afterwards."""
    image = build_image()
    moto = start_moto(port, log_dir)
    try:
        set_up_batch(moto, image)
        yield moto
    finally:
        moto.stop()
        remove_containers(moto)


@contextmanager
def standalone_moto() -> Iterator[MotoBatch]:
    """A moto of its own for a script (bench/): the test credentials in the environment, its log
    in a scratch directory."""
    for name, value in CREDENTIALS.items():
        os.environ.setdefault(name, value)
    with tempfile.TemporaryDirectory() as logs, moto_batch(Path(logs)) as moto:
        yield moto


_shared: MotoBatch | None = None


def shared_moto() -> MotoBatch:
    """One moto for the whole test session (jobs of different services are told apart by their
    instance tags), stopped when the session ends."""
    global _shared
    if _shared is None or _shared.process.poll() is not None:
        image = build_image()
        _shared = start_moto()
        atexit.register(_stop_shared, _shared)
        set_up_batch(_shared, image)
    return _shared


def _stop_shared(moto: MotoBatch) -> None:
    moto.stop()
    remove_containers(moto)


def terminate_tagged(moto: MotoBatch, instance_id: str) -> None:
    """End whatever a test's service left running in moto (a kill -9 leaves jobs behind)."""
    batch = moto.client()
    summaries = batch.list_jobs(jobQueue=QUEUE, filters=[{"name": "AFTER_CREATED_AT", "values": ["0"]}])["jobSummaryList"]
    live = [s["jobId"] for s in summaries if s["status"] not in ("SUCCEEDED", "FAILED")]
    for start in range(0, len(live), 100):
        for job in batch.describe_jobs(jobs=live[start : start + 100])["jobs"]:
            if job.get("tags", {}).get("batchgate:instance") == instance_id:
                batch.terminate_job(jobId=job["jobId"], reason="test over")


def set_job_transitions(moto: MotoBatch, transition: dict[str, object] | None) -> None:
    """How moto moves jobs through SUBMITTED..RUNNING (its state manager): e.g. one state every
    2 s ({"progression": "time", "seconds": 2}), or never ({"progression": "manual", "times":
    10**9}: live jobs, no containers); None: at once, moto's default."""
    if transition is None:
        path, body = "unset-transition", {"model_name": "batch::job"}
    else:
        path, body = "set-transition", {"model_name": "batch::job", "transition": transition}
    request = urllib.request.Request(f"{moto.endpoint}/moto-api/state-manager/{path}", data=json.dumps(body).encode(), method="POST")
    urllib.request.urlopen(request).close()


@contextmanager
def job_transitions(moto: MotoBatch, transition: dict[str, object]) -> Iterator[None]:
    set_job_transitions(moto, transition)
    try:
        yield
    finally:
        set_job_transitions(moto, None)
