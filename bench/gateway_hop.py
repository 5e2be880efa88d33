"""The cost of the gateway hop: one local backend reached directly and through a gateway in
front of it, in the same run, as ratios.

    .venv/bin/python bench/gateway_hop.py [--jobs 1000] [--rounds 3]

Each round starts a fresh local backend (jobs of 0.1 cores on a budget of concurrency/10) and a
gateway in front of it, warms both, then measures on each path, in alternating order:
issue -> every update received, with IssueJobs batches and with one job per call from 8
concurrent issuers; and the time from IssueJob to its update, one job at a time.
The figures come from one machine, where client, gateway, backend and jobs share the cores:
compare the ratios, not the absolute rates.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
from harness import RunningService, start_service  # noqa: E402
from local_throughput import ISSUERS, Collector, batched_rate, job, latencies, one_per_call_rate  # noqa: E402

from batchgate.v1 import batchgate_pb2 as pb  # noqa: E402
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc  # noqa: E402

PATHS = ("direct", "gateway")


@dataclass
class Figures:
    """One path's figures in one round."""

    batched: float = 0.0  # jobs/s
    single: float = 0.0  # jobs/s
    latencies: list[float] = field(default_factory=list)  # seconds


def warm(stub: pb_grpc.BatchSystemStub, jobs: int) -> None:
    collector = Collector(stub, "warm-up", 0)
    stub.IssueJobs(pb.IssueJobsRequest(specs=[job("warm-up")] * jobs))
    collector.wait_for(jobs)
    collector.close()


def one_round(args: argparse.Namespace, state: Path, gateway_first: bool) -> dict[str, Figures]:
    """Each path's figures, measured on fresh services."""
    quiet = ("--log-level", "WARNING")
    backend = start_service("local", state / "local", "--cores", str(args.concurrency / 10), *quiet)
    gateway = start_service("gateway", state / "gateway", "--backends", f"local={backend.address}", *quiet)
    services: dict[str, RunningService] = {"direct": backend, "gateway": gateway}
    try:
        stubs = {path: services[path].stub() for path in PATHS}
        order = PATHS[::-1] if gateway_first else PATHS
        for path in order:
            warm(stubs[path], 200)
        figures = {path: Figures() for path in PATHS}
        for path in order:
            figures[path].batched = batched_rate(stubs[path], args.jobs, args.batch)
        for path in order:
            figures[path].single = one_per_call_rate(stubs[path], args.jobs)
        for path in order:
            figures[path].latencies = latencies(stubs[path], args.latency_samples // args.rounds)
        return figures
    finally:
        gateway.stop()
        backend.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-samples", type=int, default=300, help="in all, shared among the rounds")
    args = parser.parse_args()

    rounds = []
    for index in range(args.rounds):
        with tempfile.TemporaryDirectory() as state:
            rounds.append(one_round(args, Path(state), gateway_first=index % 2 == 1))

    def rates(path: str, kind: str) -> list[float]:
        return [getattr(figures[path], kind) for figures in rounds]

    def ratio(kind: str) -> float:
        return statistics.median(via / direct for via, direct in zip(rates("gateway", kind), rates("direct", kind), strict=True))

    print(f"gateway hop: {args.jobs} trivial jobs x {args.rounds} rounds, {args.concurrency} at a time, {os.cpu_count()} cores")
    print(f"  {'':28} {'direct':>12} {'via gateway':>12}  ratio")
    for kind, label, target in (("batched", f"IssueJobs x{args.batch}", 0.9), ("single", f"1 per call, {ISSUERS} issuers", 0.75)):
        direct, via = statistics.median(rates("direct", kind)), statistics.median(rates("gateway", kind))
        print(f"  {label:28} {direct:8.0f} j/s {via:8.0f} j/s  {ratio(kind):.2f}x  (target >= {target}x)")
    for path in PATHS:
        waits = sorted(wait for figures in rounds for wait in figures[path].latencies)
        p50, p99 = statistics.median(waits) * 1000, waits[max(0, int(len(waits) * 0.99) - 1)] * 1000
        print(f"  issue -> update, {path:8} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  ({len(waits)} jobs, one at a time)")


if __name__ == "__main__":
    main()
