"""Kubernetes job output figures, against the emulated cluster of tests/k8s (its API server serves
pods/{name}/log from the log its kubelet keeps of a real container), in one run:

a failed job's update quotes the last 2 KiB of its log, and `batchgate logs --tail` asks for a
tail in bytes, which the API cannot give (it has tailLines and limitBytes). The driver asks for
a few lines, more at each try (services/k8s/logs.py PodLog, called here as the service calls
it); the baseline reads the whole log through the official client and keeps its end. Both
against the same pod, with logs of 1 MiB and 10 MiB (the kubelet's default
containerLogMaxSize): the bytes the API server sent, and the time, the median of several rounds
taken in turn. Here client and server share a loopback; on a cluster the log crosses the
network from the kubelet through the API server, where bytes cost more than here.

    .venv/bin/python bench/k8s_output.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "k8s")]

from harness import collect_updates, spec  # noqa: E402
from k8s_cluster import NAMESPACE, emulated_cluster, start_k8s_service  # noqa: E402
from kubernetes import client, config  # noqa: E402

from batchgate.services.k8s.logs import JobPod, PodLog  # noqa: E402
from batchgate.v1 import batchgate_pb2 as pb  # noqa: E402

TAIL = 2048


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="bench-k8s-output-"))
    with emulated_cluster(directory / "cluster") as cluster:
        service = start_k8s_service(directory / "k8s", cluster.kubeconfig)
        try:
            configuration = client.Configuration()
            config.load_kube_config(str(cluster.kubeconfig), client_configuration=configuration)
            core = client.CoreV1Api(client.ApiClient(configuration))
            print(f"a tail of {TAIL} bytes of a pod log; median of {args.rounds} rounds")
            print(f"{'log':>6} | {'tailLines tries: sent, time':>28} | {'whole log: sent, time':>24} | {'bytes':>7} {'time':>6}")
            for mebibytes in (1, 10):
                lines = mebibytes * 1024 * 1024 // 64  # lines of 64 bytes
                command = f"yes '{'x' * 63}' | head -n {lines}"
                job_id = service.stub().IssueJob(pb.IssueJobRequest(spec=spec(command, memory=256 * 1024**2, job_set=f"m{mebibytes}"))).job_id
                (update,) = collect_updates(service.stub(), 1, job_set=f"m{mebibytes}", timeout=300)
                assert update.exit_reason == pb.EXIT_REASON_FINISHED, update
                (pod,) = [p for p in cluster.pods() if p["metadata"]["labels"].get("batchgate.io/job-id") == str(job_id)]
                job = JobPod(job_id, update.backing_id, find=lambda pod=pod: pod, live=lambda: False)

                def tries() -> bytes:
                    return b"".join(PodLog(core, NAMESPACE, "bench", job, TAIL, False))

                def whole_log() -> bytes:
                    return core.read_namespaced_pod_log(pod["metadata"]["name"], NAMESPACE, _preload_content=False).data[-TAIL:]

                assert tries() == whole_log() and len(tries()) == TAIL
                timings: dict[str, list[float]] = {"tries": [], "whole": []}
                sent: dict[str, int] = {}
                for _ in range(args.rounds):
                    for name, read in (("tries", tries), ("whole", whole_log)):
                        before = cluster.server.log_bytes_sent
                        started = time.perf_counter()
                        read()
                        timings[name].append(time.perf_counter() - started)
                        sent[name] = cluster.server.log_bytes_sent - before
                ours, theirs = statistics.median(timings["tries"]), statistics.median(timings["whole"])
                print(
                    f"{mebibytes:>4}Mi | {sent['tries']:>12,} B {ours * 1000:>9.1f} ms | {sent['whole']:>10,} B {theirs * 1000:>7.1f} ms |"
                    f" {sent['whole'] / sent['tries']:>6.0f}x {theirs / ours:>5.1f}x"
                )
        finally:
            service.kill()


if __name__ == "__main__":
    main()
