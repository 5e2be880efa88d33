"""End-to-end throughput of trivial jobs on the local backend, as ratios to a raw baseline.

    .venv/bin/python bench/local_throughput.py [--jobs 2000] [--concurrency 20]

Baseline: a raw spawn-and-reap loop in this process (`/bin/sh -c true` started with posix_spawn
in a new session, as the local backend starts jobs, keeping `concurrency` alive). Then through a local backend started as a
separate process, with the same concurrency (jobs of 0.1 cores on a budget of concurrency/10):
issue -> update received, once with IssueJobs batches and once with one job per call from 8
concurrent issuers; and the time from IssueJob to its update, one job at a time. Where Toil is
installed, its SingleMachineBatchSystem runs the same jobs in the same run.
All figures come from one run on one machine: compare the ratios, not the absolute rates.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import start_service  # noqa: E402

from batchgate.v1 import batchgate_pb2 as pb  # noqa: E402
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc  # noqa: E402

COMMAND = "true"
ISSUERS = 8


def raw_rate(jobs: int, concurrency: int) -> float:
    """Jobs per second spawning and reaping `/bin/sh -c true` directly, `concurrency` at a time,
    the way the local backend starts a job (posix_spawn, a new session, /dev/null for output)."""
    devnull = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    started = time.perf_counter()
    alive = 0
    launched = 0
    while launched < jobs or alive:
        while alive < concurrency and launched < jobs:
            os.posix_spawn("/bin/sh", ["/bin/sh", "-c", COMMAND], os.environ, file_actions=devnull, setsid=True)
            launched += 1
            alive += 1
        os.wait()
        alive -= 1
    return jobs / (time.perf_counter() - started)


def job(job_set: str) -> pb.JobSpec:
    return pb.JobSpec(command=COMMAND, cores=0.1, memory=1024**2, disk=1024**2, job_set=job_set)


class Collector:
    """Reads the update stream in a thread and tells when `expected` updates have arrived."""

    def __init__(self, stub: pb_grpc.BatchSystemStub, job_set: str, after: int) -> None:
        self.job_set = job_set
        self.arrived: dict[int, float] = {}
        self.last_sequence = after
        self._lock = threading.Condition()
        self._stream = stub.GetUpdatedJob(pb.GetUpdatedJobRequest(after_sequence=after, job_set=job_set))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for response in self._stream:
                now = time.perf_counter()
                with self._lock:
                    for update in response.updates:
                        self.arrived[update.job_id] = now
                        self.last_sequence = update.sequence
                    self._lock.notify_all()
        except grpc.RpcError:
            pass

    def wait_for(self, count: int, timeout: float = 600) -> None:
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.arrived) >= count, timeout):
                raise RuntimeError(f"only {len(self.arrived)} of {count} updates arrived")

    def close(self) -> None:
        self._stream.cancel()


def batched_rate(stub: pb_grpc.BatchSystemStub, jobs: int, batch: int) -> float:
    job_set = f"batched-{uuid.uuid4().hex}"  # each measurement counts only its own updates
    collector = Collector(stub, job_set, 0)
    started = time.perf_counter()
    for offset in range(0, jobs, batch):
        stub.IssueJobs(pb.IssueJobsRequest(specs=[job(job_set)] * min(batch, jobs - offset)))
    collector.wait_for(jobs)
    elapsed = time.perf_counter() - started
    collector.close()
    return jobs / elapsed


def one_per_call_rate(stub: pb_grpc.BatchSystemStub, jobs: int) -> float:
    job_set = f"single-{uuid.uuid4().hex}"
    collector = Collector(stub, job_set, 0)
    started = time.perf_counter()

    def issue(count: int) -> None:
        for _ in range(count):
            stub.IssueJob(pb.IssueJobRequest(spec=job(job_set)))

    with ThreadPoolExecutor(ISSUERS) as pool:
        list(pool.map(issue, [jobs // ISSUERS] * ISSUERS))
    collector.wait_for(jobs // ISSUERS * ISSUERS)
    elapsed = time.perf_counter() - started
    collector.close()
    return jobs // ISSUERS * ISSUERS / elapsed


def latencies(stub: pb_grpc.BatchSystemStub, samples: int) -> list[float]:
    collector = Collector(stub, f"latency-{uuid.uuid4().hex}", 0)
    found = []
    for index in range(samples):
        started = time.perf_counter()
        job_id = stub.IssueJob(pb.IssueJobRequest(spec=job(collector.job_set))).job_id
        collector.wait_for(index + 1)
        found.append(collector.arrived[job_id] - started)
    collector.close()
    return found


def toil_rate(jobs: int, concurrency: int) -> float | None:
    """Toil's SingleMachineBatchSystem on the same jobs, if Toil is installed."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        from toil_single_machine import single_machine_rate
    except ImportError:  # Toil is not installed
        return None
    return single_machine_rate(COMMAND, jobs, cores=concurrency / 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5, help="raw and batchgate alternate, so drift hits both")
    parser.add_argument("--latency-samples", type=int, default=200)
    args = parser.parse_args()

    raw_rate(200, args.concurrency)  # warm the page cache and the shell
    raws: list[float] = []
    batched: list[tuple[float, float]] = []  # (rate, ratio to the raw rates measured either side)
    single: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as state:
        service = start_service("local", Path(state), "--cores", str(args.concurrency / 10), "--log-level", "WARNING")
        try:
            stub = service.stub()
            batched_rate(stub, 200, args.batch)  # warm up
            raws.append(raw_rate(args.jobs, args.concurrency))
            for _ in range(args.rounds):
                for results, measure in ((batched, lambda: batched_rate(stub, args.jobs, args.batch)), (single, lambda: one_per_call_rate(stub, args.jobs))):
                    rate = measure()
                    raws.append(raw_rate(args.jobs, args.concurrency))
                    results.append((rate, rate / statistics.mean(raws[-2:])))
            waits = sorted(latencies(stub, args.latency_samples))
        finally:
            service.stop()
    toil = toil_rate(min(args.jobs, 500), args.concurrency)  # Toil is slow: fewer jobs for it

    def summary(results: list[tuple[float, float]]) -> str:
        ratios = sorted(ratio for _, ratio in results)
        rate = statistics.median(rate for rate, _ in results)
        return f"{rate:7.0f} jobs/s  {statistics.median(ratios):.2f}x raw (rounds {ratios[0]:.2f}-{ratios[-1]:.2f})"

    raw = statistics.median(raws)
    print(f"local backend: {args.jobs} trivial jobs ({COMMAND!r}) x {args.rounds} rounds, {args.concurrency} at a time, {os.cpu_count()} cores")
    print(f"  raw spawn-and-reap loop        {raw:7.0f} jobs/s  (runs: {min(raws):.0f}-{max(raws):.0f}; each round is compared with the runs either side)")
    print(f"  batchgate, IssueJobs x{args.batch:<5}    {summary(batched)}  (target >= 0.85x)")
    print(f"  batchgate, 1 per call, {ISSUERS} issuers {summary(single)}  (target >= 0.42x)")
    if toil is not None:
        print(f"  Toil SingleMachineBatchSystem  {toil:7.0f} jobs/s  {toil / raw:.2f}x raw")
    else:
        print("  Toil SingleMachineBatchSystem: not installed here, not measured")
    p50 = statistics.median(waits) * 1000
    p99 = waits[int(len(waits) * 0.99) - 1] * 1000
    print(f"  issue -> update, one job at a time: median {p50:.2f} ms, p99 {p99:.2f} ms ({len(waits)} jobs)  (target median <= 5 ms)")


if __name__ == "__main__":
    main()
