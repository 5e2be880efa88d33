"""Kubernetes backend figures, against the emulated API server of tests/k8s (the same one the
tests use), in one run:

1. creating 200 Jobs through the service (`batchgate serve k8s`: one IssueJob call per job, as
   Toil issues them, and all in one IssueJobs call; timed until the last Job is in the API
   server) against a plain loop of the official client's `create_namespaced_job` with the same
   manifests, one after another; the median of three rounds, the three taken in turn; once as
   the emulator answers (CPU-bound on both sides) and once with 5 ms added to every answer, the
   order of a real API server's create;
2. API calls per second the service makes while 1, 100 and 1000 of its jobs are live (counted
   by the API server), over a window of some seconds each.

The jobs never run: no controller plays the cluster here, so every Job stays live and only the
service's own calls are counted. The clients (the loop, the service's issuer) run in processes
of their own; the API server runs in this one.

    .venv/bin/python bench/k8s_throughput.py [--jobs 200] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "k8s")]

from harness import RunningService, spec, start_service  # noqa: E402
from k8s_apiserver import Cluster, kubeconfig, serve  # noqa: E402
from k8s_cluster import IMAGE, NAMESPACE, node  # noqa: E402

from batchgate.driver import Job  # noqa: E402
from batchgate.services.k8s.manifest import Settings, job_manifest  # noqa: E402
from batchgate.v1 import batchgate_pb2 as pb  # noqa: E402

ROUNDS = 3
# Added to each answer: none (this machine's CPU alone), and a few milliseconds, the order of a
# real API server's create (a round trip and an etcd write).
LATENCIES = [0.0, 0.005]
LOOP = """
import json, sys, time
from kubernetes import client, config
configuration = client.Configuration()
config.load_kube_config(sys.argv[1], client_configuration=configuration)
batch = client.BatchV1Api(client.ApiClient(configuration))
manifests = json.load(open(sys.argv[2]))
started = time.monotonic()
for manifest in manifests:
    batch.create_namespaced_job(manifest["metadata"]["namespace"], manifest)
print(time.monotonic() - started)
"""


def plain_loop(config: Path, count: int, scratch: Path, round_number: int) -> float:
    """Seconds a plain create_namespaced_job loop takes for `count` Jobs (in a process of its own)."""
    settings = Settings(image=IMAGE)
    instance = f"plainloop{round_number:03d}"
    manifests = [
        job_manifest(Job(job_id=i, command="true", name="loop", cores=0.1, memory=64 * 1024**2, disk=0), instance_id=instance, service="loop", settings=settings)
        for i in range(1, count + 1)
    ]
    listing = scratch / "manifests.json"
    listing.write_text(json.dumps(manifests))
    done = subprocess.run([sys.executable, "-c", LOOP, str(config), str(listing)], capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


ISSUER = """
import sys, time
import grpc
from batchgate.v1 import batchgate_pb2 as pb, batchgate_pb2_grpc as pb_grpc
address, count, batched = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "batched"
stub = pb_grpc.BatchSystemStub(grpc.insecure_channel(address))
stub.GetCapabilities(pb.GetCapabilitiesRequest())  # connected before the clock starts
spec = dict(command="true", cores=0.1, memory=64 * 1024**2)
print(time.time(), flush=True)
if batched:
    stub.IssueJobs(pb.IssueJobsRequest(specs=[pb.JobSpec(**spec) for _ in range(count)]))
else:
    for _ in range(count):
        stub.IssueJob(pb.IssueJobRequest(spec=pb.JobSpec(**spec)))
"""


def through_service(service: RunningService, cluster: Cluster, count: int, *, batched: bool) -> float:
    """Seconds from the first IssueJob (or the one IssueJobs) until the service's `count`-th Job
    is in the API server. The client runs in a process of its own, as the plain loop does."""
    target = cluster.size("jobs") + count
    issuer = subprocess.Popen(
        [sys.executable, "-c", ISSUER, service.address, str(count), "batched" if batched else "single"], stdout=subprocess.PIPE, text=True
    )
    assert issuer.stdout is not None
    started = float(issuer.stdout.readline())
    version = cluster.version
    while cluster.size("jobs") < target:
        version = cluster.wait_for_change(version, 1.0)
    finished = time.time()
    issuer.wait()
    return finished - started


def calls_per_second(service: RunningService, cluster: Cluster, live: int, seconds: float) -> None:
    stub = service.stub()
    missing = live - cluster.size("jobs")
    for start in range(0, max(0, missing), 500):
        stub.IssueJobs(pb.IssueJobsRequest(specs=[spec("true") for _ in range(min(500, missing - start))]))
    while cluster.size("jobs") < live:
        time.sleep(0.1)
    time.sleep(2)  # let the creates' echoes settle
    before = dict(cluster.requests)
    time.sleep(seconds)
    after = dict(cluster.requests)
    made = {name: after.get(name, 0) - before.get(name, 0) for name in after if after.get(name, 0) != before.get(name, 0)}
    total = sum(made.values())
    kinds = ", ".join(f"{name} {count}" for name, count in sorted(made.items())) or "none"
    print(f"{live:>9}  {seconds:>7.0f}  {total:>9}  {total / seconds:>12.2f}  ({kinds})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200, help="Jobs per creation run")
    parser.add_argument("--seconds", type=float, default=10.0, help="window over which API calls are counted")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        cluster = Cluster()
        cluster.create("nodes", "", node("node-1"))
        server, _ = serve(cluster)
        config = scratch / "kubeconfig"
        config.write_text(kubeconfig(server.url, NAMESPACE))
        try:
            service = start_service("k8s", scratch / "k8s", "--k8s-kubeconfig", str(config), "--k8s-image", IMAGE)
            try:
                # Rounds alternate, so both sides see the same noise from the rest of the machine.
                for setting, latency in enumerate(LATENCIES):
                    server.latency = latency
                    rates: dict[str, list[float]] = {"loop": [], "single": [], "batched": []}
                    for round_number in range(ROUNDS):
                        rates["loop"].append(args.jobs / plain_loop(config, args.jobs, scratch, 10 * setting + round_number))
                        rates["single"].append(args.jobs / through_service(service, cluster, args.jobs, batched=False))
                        rates["batched"].append(args.jobs / through_service(service, cluster, args.jobs, batched=True))
                    loop, single, batched = (statistics.median(rates[name]) for name in ("loop", "single", "batched"))
                    print(f"creating {args.jobs} Jobs, API server answering in +{latency * 1000:.0f} ms, jobs/s (median of {ROUNDS} alternating rounds):")
                    print(f"  plain create_namespaced_job loop        {loop:7.1f}")
                    print(f"  batchgate service, one IssueJob per job {single:7.1f}   ratio {single / loop:.2f}x")
                    print(f"  batchgate service, one IssueJobs call   {batched:7.1f}   ratio {batched / loop:.2f}x")
                    print()
                server.latency = 0.0
                # A fresh service for the live-job figures, so its count starts from zero.
                service.kill()
                cluster.compact()
                for job in cluster.objects("jobs"):
                    cluster.remove("jobs", NAMESPACE, job["metadata"]["name"])
                service = start_service("k8s", scratch / "k8s-live", "--k8s-kubeconfig", str(config), "--k8s-image", IMAGE)
                print("live jobs  seconds  API calls  calls/second")
                for live in (1, 100, 1000):
                    calls_per_second(service, cluster, live, args.seconds)
            finally:
                service.kill()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
