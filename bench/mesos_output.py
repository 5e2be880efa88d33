"""What job output costs on the Mesos backend, where it is read from each task's sandbox through
its agent (`/state`, then `/files/read`), against baselines measured in the same run:

- failed jobs, each of whose updates quotes the end of its stderr (read from the agent in the
  driver's thread as the end is reported), against jobs that finish and quote nothing;
- GetJobOutput of a finished job's whole stdout (`seq 1 10000`, 48,894 bytes: one read of
  `/state` and one of the files API), one call at a time, against the local backend's, which
  reads a file of its own.

    .venv/bin/python bench/mesos_output.py [--jobs 400] [--rounds 3] [--reads 200]

The tests' own Mesos master (tests/mesos/fake_master.py) runs in this process, with 4 simulated
agents of 1 core each serving their sandboxes over HTTP; it shares the 2 cores with the services
and the jobs: compare the ratios, not the rates.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests"), str(HERE.parent / "tests" / "mesos")]
from fake_master import AgentSpec  # noqa: E402
from harness import collect_updates, start_service  # noqa: E402
from local_throughput import Collector  # noqa: E402
from mesos_cluster import start_master, start_mesos_service  # noqa: E402

from batchgate.v1 import batchgate_pb2 as pb  # noqa: E402
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc  # noqa: E402

AGENTS = 4
FAILING = "echo 'cannot open input.csv' >&2; exit 1"
FINISHING = "echo 'cannot open input.csv' >&2; true"


def rate(stub: pb_grpc.BatchSystemStub, command: str, jobs: int, batch: int) -> float:
    """Jobs per second, first issue to last update, of `jobs` runs of `command`."""
    job_set = f"bench-{uuid.uuid4().hex}"
    spec = pb.JobSpec(command=command, cores=0.1, memory=1024**2, disk=1024**2, job_set=job_set)
    collector = Collector(stub, job_set, 0)
    started = time.perf_counter()
    for offset in range(0, jobs, batch):
        stub.IssueJobs(pb.IssueJobsRequest(specs=[spec] * min(batch, jobs - offset)))
    collector.wait_for(jobs)
    elapsed = time.perf_counter() - started
    collector.close()
    return jobs / elapsed


def reads_per_second(stub: pb_grpc.BatchSystemStub, reads: int) -> tuple[float, int]:
    job_set = f"reads-{uuid.uuid4().hex}"
    spec = pb.JobSpec(command="seq 1 10000", cores=0.1, memory=1024**2, disk=1024**2, job_set=job_set)
    job_id = stub.IssueJob(pb.IssueJobRequest(spec=spec)).job_id
    collect_updates(stub, 1, job_set=job_set)
    size = 0
    started = time.perf_counter()
    for _ in range(reads):
        size = sum(len(response.data) for response in stub.GetJobOutput(pb.GetJobOutputRequest(job_id=job_id)))
    return reads / (time.perf_counter() - started), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()

    quiet = ("--log-level", "WARNING")
    agents = [AgentSpec(f"agent-{index}.bench", cpus=1, mem=2048, disk=10240) for index in range(AGENTS)]
    with tempfile.TemporaryDirectory() as state:
        master = start_master(Path(state) / "master", agents, heartbeat_interval=15.0, resend_interval=10.0)
        mesos = start_mesos_service(Path(state) / "mesos", master, *quiet)
        local = start_service("local", Path(state) / "local", "--cores", str(AGENTS), "--memory", "8G", *quiet)
        try:
            stub = mesos.stub()
            rate(stub, FINISHING, 100, args.batch)  # warm up
            rates: dict[str, list[float]] = {"failing": [], "finishing": []}
            for round_number in range(args.rounds):
                order = ("failing", "finishing") if round_number % 2 == 0 else ("finishing", "failing")
                for name in order:
                    rates[name].append(rate(stub, FAILING if name == "failing" else FINISHING, args.jobs, args.batch))
            reads: dict[str, list[float]] = {"mesos": [], "local": []}
            size = 0
            for round_number in range(args.rounds):
                for name in ("mesos", "local") if round_number % 2 == 0 else ("local", "mesos"):
                    per_second, size = reads_per_second((mesos if name == "mesos" else local).stub(), args.reads)
                    reads[name].append(per_second)
        finally:
            mesos.stop()
            local.stop()
            master.stop()

    ratios = [failing / finishing for failing, finishing in zip(rates["failing"], rates["finishing"], strict=True)]
    read_ratios = [on_mesos / on_local for on_mesos, on_local in zip(reads["mesos"], reads["local"], strict=True)]
    print(f"mesos job output: {AGENTS} agents x 1 core, {args.rounds} rounds, {os.cpu_count()} cores")
    print(f"  {args.jobs} jobs finishing (nothing quoted)      {statistics.median(rates['finishing']):6.0f} jobs/s")
    print(
        f"  {args.jobs} jobs failing (stderr quoted)       {statistics.median(rates['failing']):6.0f} jobs/s  "
        f"{statistics.median(ratios):.2f}x finishing (rounds {min(ratios):.2f}-{max(ratios):.2f})"
    )
    print(f"  GetJobOutput, {size} bytes, local backend  {statistics.median(reads['local']):6.0f} reads/s")
    print(
        f"  GetJobOutput, {size} bytes, mesos sandbox  {statistics.median(reads['mesos']):6.0f} reads/s  "
        f"{statistics.median(read_ratios):.2f}x local (rounds {min(read_ratios):.2f}-{max(read_ratios):.2f})"
    )


if __name__ == "__main__":
    main()
