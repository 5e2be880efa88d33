"""AWS Batch backend figures, against moto's AWS Batch server (as the tests run it):

1. submitting 200 jobs through the service (IssueJobs, then until its metrics count 200 answered
   SubmitJob calls) against a plain boto3 `submit_job` loop of the same requests to the same
   endpoint, in alternating rounds of the same run;
2. AWS API calls per poll cycle with 1, 100 and 1000 live jobs (counted by the driver's own
   call counter over cycles of its own poll()).

moto is told to keep every job SUBMITTED (its state manager, progression "manual"), so jobs are
live but no container runs: the figures are the API's, not Docker's.

    .venv/bin/python bench/awsbatch_throughput.py [--jobs 200] [--rounds 3] [--cycles 5]
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "awsbatch")]

from driver_recording import HeldJobs  # noqa: E402
from harness import start_service  # noqa: E402
from moto_batch import CREDENTIALS, DEFINITION, QUEUE, REGION, MotoBatch, set_job_transitions, standalone_moto  # noqa: E402

from batchgate.driver import Job  # noqa: E402
from batchgate.services.awsbatch import jobs as translate  # noqa: E402
from batchgate.services.awsbatch.driver import AwsBatchDriver, Settings  # noqa: E402
from batchgate.v1 import batchgate_pb2 as pb  # noqa: E402

SUBMITTED_OK = re.compile(r'batchgate_scheduler_commands_total\{[^}]*operation="submit_job",result="ok"[^}]*\} ([0-9.e+]+)')



def bench_job(job_id: int) -> Job:
    return Job(job_id=job_id, command="true", name=f"bench-{job_id}", cores=1, memory=16 * 1024**2, disk=0)


def plain_loop(moto: MotoBatch, count: int) -> float:
    client = moto.client()
    instance = uuid.uuid4().hex[:12]
    requests = [
        translate.submit_request(bench_job(i), queue=QUEUE, definition=DEFINITION, instance_id=instance, owner="", timeout=None)
        for i in range(1, count + 1)
    ]
    started = time.monotonic()
    for request in requests:
        client.submit_job(**request)
    return count / (time.monotonic() - started)


def through_the_service(moto: MotoBatch, count: int, state_dir: Path) -> float:
    args = moto.service_args()
    args[args.index("--awsbatch-poll-interval") + 1] = "1"  # the default, as deployed
    service = start_service("awsbatch", state_dir, *args, env=CREDENTIALS)
    try:
        stub = service.stub()
        specs = [pb.JobSpec(command="true", name=f"bench-{i}", cores=1, memory=16 * 1024**2, disk=0) for i in range(count)]
        started = time.monotonic()
        stub.IssueJobs(pb.IssueJobsRequest(specs=specs))
        while submitted(service.metrics_address) < count:
            time.sleep(0.02)
        return count / (time.monotonic() - started)
    finally:
        service.kill()


def submitted(metrics_address: str) -> float:
    with urllib.request.urlopen(f"http://{metrics_address}/metrics") as answer:
        found = SUBMITTED_OK.search(answer.read().decode())
    return float(found.group(1)) if found else 0.0


def submit_throughput(moto: MotoBatch, count: int, rounds: int) -> None:
    loop_rates: list[float] = []
    service_rates: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        for round_number in range(rounds):
            loop_rates.append(plain_loop(moto, count))
            service_rates.append(through_the_service(moto, count, Path(scratch) / f"round{round_number}"))
    loop, service = sorted(loop_rates)[rounds // 2], sorted(service_rates)[rounds // 2]
    ratios = ", ".join(f"{s / l:.2f}" for s, l in zip(service_rates, loop_rates, strict=True))
    print(f"submitting {count} jobs, median of {rounds} rounds:")
    print(f"  plain boto3 submit_job loop      {loop:7.1f} jobs/s")
    print(f"  batchgate service (IssueJobs)    {service:7.1f} jobs/s")
    print(f"  ratio (service / loop): {service / loop:.2f}x  (rounds: {ratios}; target >= 1.0x)")


def calls_per_cycle(moto: MotoBatch, live: int, cycles: int) -> None:
    # The poller is idle (an hour's interval): the cycles are the driver's own poll(), run here.
    settings = Settings(region=REGION, endpoint_url=moto.endpoint, job_queue=QUEUE, job_definition=DEFINITION, poll_interval=3600)
    driver = AwsBatchDriver(settings)
    driver.attach(HeldJobs("awsbatch"), uuid.uuid4().hex[:12])
    assert all(driver.submit([bench_job(i) for i in range(1, live + 1)])), "some jobs were not submitted"
    before = dict(driver.calls.counts)
    for _ in range(cycles):
        driver.poll()
    driver.close()
    counts = {operation: count - before.get(operation, 0) for operation, count in driver.calls.counts.items()}
    counts = {operation: count for operation, count in counts.items() if count}
    total = sum(counts.values())
    per_cycle = total / max(cycles, 1)
    kinds = ", ".join(f"{operation} {count}" for operation, count in sorted(counts.items()))
    print(f"{live:>9}  {cycles:>11}  {total:>9}  {per_cycle:>9.2f}  {per_cycle / math.ceil(live / 100):>17.2f}  ({kinds})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200, help="jobs per submit run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each submit run")
    parser.add_argument("--cycles", type=int, default=5, help="poll cycles per job count")
    args = parser.parse_args()
    with standalone_moto() as moto:
        set_job_transitions(moto, {"progression": "manual", "times": 10**9})  # jobs stay SUBMITTED
        submit_throughput(moto, args.jobs, args.rounds)
        print()
        print("live jobs  poll cycles  AWS calls  per cycle  per cycle per 100")
        for live in (1, 100, 1000):
            calls_per_cycle(moto, live, args.cycles)


if __name__ == "__main__":
    main()
