"""Where a local backend's time goes when jobs come one per IssueJob call: py-spy samples the
service while 8 issuers call IssueJob with trivial jobs, and this prints the share of the
samples by thread and the functions with the most samples (own, and with what they call).

    .venv/bin/python bench/issue_profile.py [--seconds 20] [--top 25]

Needs py-spy (in the dev extra) and the right to trace the service (root, or
kernel.yama.ptrace_scope=0). py-spy samples the thread holding Python's GIL (--gil): the shares
are of the Python work; gRPC's C core and SQLite run beside it without the GIL.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
from harness import start_service  # noqa: E402
from local_throughput import ISSUERS, Collector, job  # noqa: E402

from batchgate.v1 import batchgate_pb2 as pb  # noqa: E402

RATE = 250  # samples per second


def issue_for(stub, seconds: float) -> int:  # type: ignore[no-untyped-def]
    job_set = f"profile-{uuid.uuid4().hex}"
    collector = Collector(stub, job_set, 0)
    deadline = time.monotonic() + seconds
    issued = [0] * ISSUERS

    def issue(index: int) -> None:
        while time.monotonic() < deadline:
            stub.IssueJob(pb.IssueJobRequest(spec=job(job_set)))
            issued[index] += 1

    threads = [threading.Thread(target=issue, args=(index,)) for index in range(ISSUERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    collector.wait_for(sum(issued))
    collector.close()
    return sum(issued)


def summarize(raw: Path, top: int, possible: float) -> None:
    by_thread: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread, frames = frames[0], frames[1:]
        total += count
        by_thread[_thread_name(thread)] += count
        if frames:
            own[_short(frames[-1])] += count
        for name in {_short(frame) for frame in frames}:
            inclusive[name] += count
    print(f"{total} samples of a thread holding the GIL: it was held {total / possible:.0%} of the time")
    print("by thread:")
    for name, count in by_thread.most_common():
        print(f"  {count / total:6.1%}  {name}")
    print(f"most samples, own (top {top}):")
    for name, count in own.most_common(top):
        print(f"  {count / total:6.1%}  {name}")
    print(f"most samples, with callees (top {top}):")
    for name, count in inclusive.most_common(top):
        print(f"  {count / total:6.1%}  {name}")


def _thread_name(frame: str) -> str:
    # py-spy --threads writes 'thread (TID): NAME'; threads of one pool differ only by numbers
    return re.sub(r"\d+", "N", frame.split("): ", 1)[-1])


def _short(frame: str) -> str:
    # 'function (path/to/file.py:123)' -> 'function (file.py)'
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    return f"{name} ({Path(path).name})" if path else name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--cores", type=float, default=2.0, help="the backend's budget (jobs of 0.1 cores)")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with tempfile.TemporaryDirectory() as state:
        service = start_service("local", Path(state), "--cores", str(args.cores), "--log-level", "WARNING")
        try:
            stub = service.stub()
            issue_for(stub, 2.0)  # warm up
            raw = Path(state) / "profile.txt"
            spy = subprocess.Popen(
                [py_spy, "record", "--pid", str(service.process.pid), "--format", "raw", "--threads", "--gil", "--nonblocking",
                 "--rate", str(RATE), "--duration", str(int(args.seconds)), "--output", str(raw)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            time.sleep(1.0)  # py-spy attaches
            process = psutil.Process(service.process.pid)
            cpu_before, started = sum(process.cpu_times()[:2]), time.perf_counter()
            jobs = issue_for(stub, args.seconds - 2)
            elapsed = time.perf_counter() - started
            cpu = sum(process.cpu_times()[:2]) - cpu_before
            _, errors = spy.communicate(timeout=args.seconds + 60)
            if spy.returncode != 0 or not raw.exists():
                raise SystemExit(f"py-spy failed: {errors.decode(errors='replace')}")
        finally:
            service.stop()
        print(f"IssueJob one per call from {ISSUERS} issuers: {jobs} jobs, {jobs / elapsed:.0f} jobs/s while sampled")
        print(f"the service's CPU time: {cpu / jobs * 1e6:.0f} us per job ({cpu / elapsed:.0%} of a core), jobs' own processes not counted")
        summarize(raw, args.top, args.seconds * RATE)


if __name__ == "__main__":
    main()
