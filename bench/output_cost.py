"""What keeping every job's output costs the local backend: trivial jobs through IssueJobs
batches, on a backend that keeps each job's stdout and stderr in files (the default) and on one
started with --output-max-bytes 0 (output discarded, as before GetJobOutput), in alternating
rounds; then GetJobOutput of a finished job's whole output, one call at a time.

    .venv/bin/python bench/output_cost.py [--jobs 2000] [--rounds 5]

All figures come from one run on one machine: compare the ratio, not the absolute rates.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import collect_updates, start_service  # noqa: E402
from local_throughput import batched_rate  # noqa: E402

from batchgate.v1 import batchgate_pb2 as pb  # noqa: E402

CONCURRENCY = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reads", type=int, default=500)
    args = parser.parse_args()

    budget = ("--cores", str(CONCURRENCY / 10), "--log-level", "WARNING")
    with tempfile.TemporaryDirectory() as state:
        kept = start_service("local", Path(state) / "kept", *budget)
        discarded = start_service("local", Path(state) / "discarded", *budget, "--output-max-bytes", "0")
        try:
            stubs = {"kept": kept.stub(), "discarded": discarded.stub()}
            for stub in stubs.values():
                batched_rate(stub, 200, args.batch)  # warm up
            rates: dict[str, list[float]] = {"kept": [], "discarded": []}
            for _ in range(args.rounds):
                for name, stub in stubs.items():
                    rates[name].append(batched_rate(stub, args.jobs, args.batch))

            stub = stubs["kept"]
            job_set = "reads"
            spec = pb.JobSpec(command="seq 1 10000", cores=0.1, memory=1024**2, disk=1024**2, job_set=job_set)
            job_id = stub.IssueJob(pb.IssueJobRequest(spec=spec)).job_id
            collect_updates(stub, 1, job_set=job_set)
            size = 0
            started = time.perf_counter()
            for _ in range(args.reads):
                size = sum(len(response.data) for response in stub.GetJobOutput(pb.GetJobOutputRequest(job_id=job_id)))
            per_read = (time.perf_counter() - started) / args.reads
        finally:
            kept.stop()
            discarded.stop()

    ratios = sorted(k / d for k, d in zip(rates["kept"], rates["discarded"], strict=True))
    print(f"local backend: {args.jobs} trivial jobs x {args.rounds} rounds, IssueJobs x{args.batch}, {CONCURRENCY} at a time, {os.cpu_count()} cores")
    for name in ("discarded", "kept"):
        print(f"  output {name:9} {statistics.median(rates[name]):7.0f} jobs/s (rounds {min(rates[name]):.0f}-{max(rates[name]):.0f})")
    print(f"  kept / discarded: {statistics.median(ratios):.2f}x (rounds {ratios[0]:.2f}-{ratios[-1]:.2f})")
    print(f"  GetJobOutput of a finished job's {size} bytes: {per_read * 1000:.2f} ms a call ({args.reads} calls)")


if __name__ == "__main__":
    main()
