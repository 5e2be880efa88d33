"""What grows with the work: queued jobs, stored updates and open streams, each measured against
the same service with none of it, in one run.

    .venv/bin/python bench/scale.py [--queued 100000] [--stored 1000000] [--streams 1000,10000]

1. Queued jobs: a local backend with a budget of 1 core behind a gateway; jobs of 1 core that
   sleep, so all but one wait. Issued through the gateway with IssueJobs (100 a call): the issue
   rate of the last 10k against the first 10k, memory per queued job in the gateway and in the
   backend, and ListIssuedJobs / GetSchedulingStatus times with the jobs queued against empty.
2. A store of finished jobs, written with the kit's Store as a service records them: the time a
   local backend takes from start to SERVING on it against an empty store, a client reading every
   update from sequence 0 (updates/s, each exactly once), and a client resuming from the tail:
   IssueJob -> its update, against the same on an empty store.
3. Open streams on a gateway (local backend behind it): subscribers in another process, spread
   over 100 job sets; then jobs issued one per call through the gateway while they watch: IssueJob
   latency against the same with no stream open, every subscriber getting every update of its job
   set exactly once, and the gateway's memory and threads per stream.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
from harness import RunningService, start_service  # noqa: E402

from batchgate.store import NewJob, NewUpdate, Store  # noqa: E402
from batchgate.v1 import batchgate_pb2 as pb  # noqa: E402
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc  # noqa: E402

QUIET = ("--log-level", "WARNING")
WINDOW = 10_000  # jobs whose issue rate is compared, first against last
ISSUE_BATCH = 100
JOB_SETS = 100
STREAMS_PER_CONNECTION = 500


def rss(service: RunningService) -> int:
    return psutil.Process(service.process.pid).memory_info().rss


def threads(service: RunningService) -> int:
    return psutil.Process(service.process.pid).num_threads()


def seconds(call: Callable[[], object], repeat: int = 5) -> float:
    """The median time of `call`."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"scale: gave up waiting {timeout:g} s for {what}")
        time.sleep(0.2)


# ---- 1. queued jobs --------------------------------------------------------------------------


def queued(jobs: int, state: Path) -> None:
    backend = start_service("local", state / "local", "--cores", "1", *QUIET)
    gateway = start_service("gateway", state / "gateway", "--backends", f"local={backend.address}", *QUIET)
    try:
        stub, backend_stub = gateway.stub(), backend.stub()
        list_empty = seconds(lambda: stub.ListIssuedJobs(pb.ListIssuedJobsRequest()))
        status_empty = seconds(lambda: stub.GetSchedulingStatus(pb.GetSchedulingStatusRequest()))
        memory = {"gateway": rss(gateway), "local": rss(backend)}
        spec = pb.JobSpec(command="sleep 3600", cores=1, memory=1024**2, disk=1024**2, job_set="queued")
        rates: list[float] = []  # jobs/s of each window
        issued = 0
        started = time.perf_counter()
        while issued < jobs:
            count = min(ISSUE_BATCH, jobs - issued)
            stub.IssueJobs(pb.IssueJobsRequest(specs=[spec] * count), timeout=60)
            issued += count
            if issued % WINDOW == 0 or issued == jobs:
                now = time.perf_counter()
                rates.append((issued - WINDOW * len(rates)) / (now - started))
                started = now
        # Every job reaches the backend (one runs, the others wait there).
        wait_for(lambda: len(backend_stub.ListIssuedJobs(pb.ListIssuedJobsRequest()).job_ids) >= jobs, 600, "the backend to hold every job")
        time.sleep(2)  # let both settle (the gateway's dispatcher, the backend's recorder)
        per_job = {name: (rss(service) - memory[name]) / jobs for name, service in (("gateway", gateway), ("local", backend))}
        list_full = seconds(lambda: stub.ListIssuedJobs(pb.ListIssuedJobsRequest(), timeout=60))
        status_full = seconds(lambda: stub.GetSchedulingStatus(pb.GetSchedulingStatusRequest(), timeout=60))
        backend_list = seconds(lambda: backend_stub.ListIssuedJobs(pb.ListIssuedJobsRequest(), timeout=60))
        backend_status = seconds(lambda: backend_stub.GetSchedulingStatus(pb.GetSchedulingStatusRequest(), timeout=60))
    finally:
        gateway.kill()  # a graceful stop would hand 100k jobs back to the store: not measured here
        backend.kill()
    print(f"1. {jobs} jobs queued on a local backend (1 core; jobs of 1 core that wait), issued through a gateway, IssueJobs x{ISSUE_BATCH}")
    print(f"  issue rate: first {WINDOW // 1000}k {rates[0]:.0f} jobs/s, last {WINDOW // 1000}k {rates[-1]:.0f} jobs/s: {rates[-1] / rates[0]:.2f}x  (target >= 0.8x)")
    print(f"  by {WINDOW // 1000}k: {' '.join(f'{rate:.0f}' for rate in rates)} jobs/s")
    print(f"  memory per queued job: gateway {per_job['gateway'] / 1024:.2f} KiB, local backend {per_job['local'] / 1024:.2f} KiB  (target <= 2 KiB)")
    print(f"  ListIssuedJobs via gateway: {list_empty * 1000:.1f} ms empty, {list_full * 1000:.1f} ms with {jobs} ({backend_list * 1000:.1f} ms on the backend)")
    print(f"  GetSchedulingStatus via gateway: {status_empty * 1000:.1f} ms empty, {status_full * 1000:.1f} ms with {jobs} ({backend_status * 1000:.1f} ms on the backend)")


# ---- 2. a store of finished jobs -------------------------------------------------------------


def write_finished_jobs(path: Path, count: int) -> None:
    """`count` finished jobs with their updates, written through the kit's Store as the service
    records them (insert_jobs, then record), in batches."""
    store = Store(path)
    spec = pb.JobSpec(command="true", cores=0.1, memory=64 * 1024**2, disk=1024**2, job_set="stored").SerializeToString()
    batch = 10_000
    now = time.time()
    for first in range(1, count + 1, batch):
        ids = range(first, min(first + batch, count + 1))
        store.insert_jobs([NewJob(job_id, spec, "stored", "") for job_id in ids], now)
        updates = [
            NewUpdate(
                job_id,
                job_id,
                "stored",
                pb.UpdatedJob(
                    sequence=job_id, job_id=job_id, exit_reason=pb.EXIT_REASON_FINISHED, exit_status=0,
                    wall_time_seconds=0.01, backing_id=str(100_000 + job_id), job_set="stored", backend="local",
                ).SerializeToString(),
            )
            for job_id in ids
        ]
        store.record([(job_id, None, now) for job_id in ids], updates, now, {})
    store.close()


def start_until_serving(state: Path) -> tuple[RunningService, float]:
    """A local backend on `state`, and the seconds from its start until Health says SERVING."""
    started = time.perf_counter()
    service = start_service("local", state, "--cores", "2", *QUIET)
    health = health_pb2_grpc.HealthStub(service.channel())
    while True:
        try:
            if health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING:
                return service, time.perf_counter() - started
        except grpc.RpcError:
            pass
        time.sleep(0.01)


def first_update_latency(stub: pb_grpc.BatchSystemStub, cursor: int, samples: int) -> list[float]:
    """IssueJob -> its update on a stream resumed from `cursor` (the last sequence seen), as a
    client that kept its cursor resumes, `samples` times."""
    found = []
    for _ in range(samples):
        stream = stub.GetUpdatedJob(pb.GetUpdatedJobRequest(after_sequence=cursor), timeout=60)
        stream.initial_metadata()
        started = time.perf_counter()
        stub.IssueJob(pb.IssueJobRequest(spec=pb.JobSpec(command="true", cores=0.1, memory=1024**2, disk=1024**2)))
        response = next(response for response in stream if response.updates)
        found.append(time.perf_counter() - started)
        cursor = response.updates[-1].sequence
        stream.cancel()
    return found


def stored(count: int, samples: int, state: Path) -> None:
    empty, empty_start = start_until_serving(state / "empty")
    try:
        empty_first = first_update_latency(empty.stub(), 0, samples)
    finally:
        empty.kill()

    built = time.perf_counter()
    full_state = state / "full"
    write_finished_jobs(full_state / "local.sqlite", count)
    build_seconds = time.perf_counter() - built
    full, full_start = start_until_serving(full_state)
    try:
        stub = full.stub()
        started = time.perf_counter()
        read = 0
        last = 0
        in_order = True
        stream = stub.GetUpdatedJob(pb.GetUpdatedJobRequest(after_sequence=0), timeout=600)
        for response in stream:
            for update in response.updates:
                in_order &= update.sequence == last + 1
                last = update.sequence
            read += len(response.updates)
            if read >= count:
                break
        stream.cancel()
        read_seconds = time.perf_counter() - started
        full_first = first_update_latency(stub, last, samples)
    finally:
        full.kill()
    print(f"2. a store of {count} finished jobs (written in {build_seconds:.0f} s), local backend")
    print(f"  start to SERVING: {full_start:.2f} s, empty store {empty_start:.2f} s  (target <= 3 s)")
    print(
        f"  reading every update from sequence 0: {read} in {read_seconds:.1f} s, {read / read_seconds:.0f} updates/s,"
        f" {'each once, in order' if in_order and read == count else 'NOT each once in order'}  (target >= 100000/s)"
    )
    print(
        f"  resumed from the tail, IssueJob -> its update: median {statistics.median(full_first) * 1000:.2f} ms,"
        f" empty store {statistics.median(empty_first) * 1000:.2f} ms: {statistics.median(full_first) / statistics.median(empty_first):.2f}x"
        f"  ({samples} jobs each)"
    )


# ---- 3. open streams on a gateway ------------------------------------------------------------


def streams(counts: list[int], jobs: int, state: Path) -> None:
    print(f"3. open streams on a gateway (local backend, 2 cores, behind it), over {JOB_SETS} job sets; {jobs} jobs issued one per call while they watch")
    for count in counts:
        backend = start_service("local", state / f"local-{count}", "--cores", "2", *QUIET)
        gateway = start_service(
            "gateway", state / f"gateway-{count}", "--backends", f"local={backend.address}",
            "--max-streams", str(count + 100), *QUIET,
        )  # fmt: skip
        try:
            stub = gateway.stub()
            issue_and_time(stub, 200, "warm-up")
            alone = issue_and_time(stub, jobs, "alone")
            memory, thread_count = rss(gateway), threads(gateway)
            subscriber = subprocess.Popen(
                [sys.executable, __file__, "--subscribe", gateway.address, str(count), str(jobs // JOB_SETS)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert subscriber.stdout is not None and subscriber.stdin is not None
            opened_at = time.perf_counter()
            if subscriber.stdout.readline().strip() != "ready":
                raise SystemExit("scale: the subscriber process failed")
            open_seconds = time.perf_counter() - opened_at
            time.sleep(1)
            per_stream = (rss(gateway) - memory) / count
            threads_per_stream = (threads(gateway) - thread_count) / count
            watched = issue_and_time(stub, jobs, "watched")
            subscriber.stdin.write("issued\n")
            subscriber.stdin.flush()
            result = json.loads(subscriber.stdout.readline())
            subscriber.wait(timeout=60)
        finally:
            gateway.kill()
            backend.kill()
        exact = result["exact"] == count
        print(f"  {count} streams (opened in {open_seconds:.1f} s): gateway memory {per_stream / 1024:.1f} KiB and {threads_per_stream:.3f} threads per stream")
        print(
            f"    IssueJob p50 {statistics.median(watched) * 1000:.2f} ms, p99 {percentile(watched, 0.99) * 1000:.2f} ms;"
            f" with no stream p50 {statistics.median(alone) * 1000:.2f} ms, p99 {percentile(alone, 0.99) * 1000:.2f} ms:"
            f" p99 {percentile(watched, 0.99) / percentile(alone, 0.99):.2f}x  (target <= 2x)"
        )
        print(
            f"    subscribers with every update of their job set exactly once: {result['exact']} of {count}"
            f"{'' if exact else ' (missing ' + str(result['missing']) + ', duplicated ' + str(result['duplicated']) + ', foreign ' + str(result['foreign']) + ', streams failed ' + str(result['failed']) + ')'};"
            f" {result['messages']} messages, {result['updates']} updates delivered"
        )


def issue_and_time(stub: pb_grpc.BatchSystemStub, jobs: int, prefix: str) -> list[float]:
    """IssueJob one at a time, round-robin over job sets PREFIX-0..99; each call's latency."""
    latencies = []
    for index in range(jobs):
        spec = pb.JobSpec(command="true", cores=0.1, memory=1024**2, disk=1024**2, job_set=f"{prefix}-{index % JOB_SETS}")
        started = time.perf_counter()
        stub.IssueJob(pb.IssueJobRequest(spec=spec), timeout=30)
        latencies.append(time.perf_counter() - started)
    return latencies


def subscribe(address: str, count: int, per_set: int) -> None:
    """The subscriber process: `count` streams from now on, then (told the jobs are issued) each
    reads until it has `per_set` updates; prints how many got exactly their job set's, once."""
    asyncio.run(_subscribe(address, count, per_set))


async def _subscribe(address: str, count: int, per_set: int) -> None:
    connections = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range((count + STREAMS_PER_CONNECTION - 1) // STREAMS_PER_CONNECTION)
    ]
    stubs = [pb_grpc.BatchSystemStub(channel) for channel in connections]
    job_sets = [f"watched-{index % JOB_SETS}" for index in range(count)]
    calls = [
        stubs[index // STREAMS_PER_CONNECTION].GetUpdatedJob(pb.GetUpdatedJobRequest(job_set=job_set), timeout=900)
        for index, job_set in enumerate(job_sets)
    ]
    for call in calls:
        await call.initial_metadata()
    print("ready", flush=True)
    totals = {"messages": 0, "updates": 0}
    seen: list[list[int]] = [[] for _ in calls]  # job ids each stream received
    failed: collections.Counter[str] = collections.Counter()  # streams that ended before we closed them, by code
    closing = False
    foreign = [False] * count  # a stream received another job set's update

    async def read(index: int) -> None:
        try:
            async for response in calls[index]:
                totals["messages"] += 1
                totals["updates"] += len(response.updates)
                for update in response.updates:
                    foreign[index] |= update.job_set != job_sets[index]
                    seen[index].append(update.job_id)
        except grpc.aio.AioRpcError as error:
            if not closing:
                failed[error.code().name] += 1

    readers = [asyncio.create_task(read(index)) for index in range(count)]
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "issued"
    deadline = time.monotonic() + float(os.environ.get("SCALE_DEADLINE", "300"))
    # Wait until every stream has its share, then a little longer for any duplicate.
    while time.monotonic() < deadline and totals["updates"] < count * per_set:
        await asyncio.sleep(0.2)
    await asyncio.sleep(2)
    closing = True
    for call in calls:
        call.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    exact = sum(1 for ids, wrong in zip(seen, foreign, strict=True) if len(ids) == len(set(ids)) == per_set and not wrong)
    missing = sum(max(0, per_set - len(set(ids))) for ids in seen)
    duplicated = sum(len(ids) - len(set(ids)) for ids in seen)
    foreign_count = sum(foreign)
    print(json.dumps({"exact": exact, "missing": missing, "duplicated": duplicated, "foreign": foreign_count, "failed": dict(failed), **totals}), flush=True)
    for channel in connections:
        await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queued", type=int, default=100_000, help="jobs queued (0: skip)")
    parser.add_argument("--stored", type=int, default=1_000_000, help="finished jobs in the store (0: skip)")
    parser.add_argument("--streams", default="1000,10000", help="open streams, a comma-separated list ('': skip)")
    parser.add_argument("--stream-jobs", type=int, default=1000, help="jobs issued while the streams watch (a multiple of 100)")
    parser.add_argument("--samples", type=int, default=50, help="jobs timed from the tail of each store")
    parser.add_argument("--subscribe", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscribe:
        address, count, per_set = args.subscribe
        subscribe(address, int(count), int(per_set))
        return
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?")
    print(f"bench/scale.py on {os.cpu_count()} cores ({cpu})")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        state = Path(scratch)
        if args.queued:
            queued(args.queued, state / "queued")
        if args.stored:
            stored(args.stored, args.samples, state / "stored")
        if args.streams:
            streams([int(count) for count in args.streams.split(",")], args.stream_jobs, state / "streams")
    print(f"(whole run {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
