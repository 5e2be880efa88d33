"""AWS Batch job output figures, against moto's AWS Batch server and CloudWatch Logs (as the tests
run them, tests/awsbatch/moto_live_logs.py): one job writes --lines lines, then its output is read

1. whole, from the head of its log stream (GetLogEvents forward, 10,000 events a page), the
   baseline: what a tail costs when it is cut from a whole read;
2. its last 2 KiB (the kit's quote of a failed job's stderr) and its last 64 KiB, as the driver
   reads a tail: backwards from the end, only as far as it needs,

each --rounds times, alternating; the medians and their ratio to the whole read.

    .venv/bin/python bench/awsbatch_output.py [--lines 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "awsbatch")]

from moto_batch import DEFINITION, QUEUE, REGION, standalone_moto  # noqa: E402

from batchgate.driver import Ending, Job, SubmittedJob  # noqa: E402
from batchgate.services.awsbatch.driver import AwsBatchDriver, Settings  # noqa: E402
from batchgate.v1 import batchgate_pb2 as pb  # noqa: E402

TAILS = (2048, 64 * 1024)


class WaitForEnd:
    """JobEvents that waits for the one job's end."""

    name = "awsbatch"

    def __init__(self) -> None:
        self.ended_event = threading.Event()
        self.ending: Ending | None = None

    def started(self, job_id: int, *, backing_id: str | None = None, at: float | None = None) -> None: ...

    def ended(self, job_id: int, ending: Ending) -> None:
        self.ending = ending
        self.ended_event.set()

    def checkpoint(self, key: str, value: int) -> None: ...

    def checkpoints(self) -> dict[str, int]:
        return {}


def timed_read(driver: AwsBatchDriver, job: SubmittedJob, tail_bytes: int) -> tuple[float, int, int]:
    """Seconds, bytes and GetLogEvents calls of one read."""
    calls = driver.logs.counts["get_log_events"]
    started = time.monotonic()
    data = b"".join(driver.output(job, pb.OUTPUT_STREAM_STDOUT, tail_bytes, False))
    return time.monotonic() - started, len(data), driver.logs.counts["get_log_events"] - calls


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=100_000, help="lines the job writes")
    parser.add_argument("--rounds", type=int, default=5, help="reads of each kind")
    args = parser.parse_args()
    with standalone_moto() as moto:
        settings = Settings(region=REGION, endpoint_url=moto.endpoint, job_queue=QUEUE, job_definition=DEFINITION, poll_interval=0.5)
        driver = AwsBatchDriver(settings)
        events = WaitForEnd()
        driver.attach(events, uuid.uuid4().hex[:12])
        job = Job(job_id=1, command=f"seq 1 {args.lines}", name="bench-output", cores=1, memory=16 * 1024**2, disk=0)
        (backing_id,) = driver.submit([job])
        if not events.ended_event.wait(600) or events.ending is None or events.ending.exit_code != 0:
            said = [line for line in moto.log_path.read_text(errors="replace").splitlines() if '" 200 ' not in line]
            raise SystemExit(f"the job did not finish: {events.ending}; moto's log:\n" + "\n".join(said[-20:]))
        submitted = SubmittedJob(job, backing_id)
        figures: dict[int, list[tuple[float, int, int]]] = {0: [], **{tail: [] for tail in TAILS}}
        for _ in range(args.rounds):
            for tail_bytes in figures:
                figures[tail_bytes].append(timed_read(driver, submitted, tail_bytes))
        driver.close()
    whole = median([seconds for seconds, _, _ in figures[0]])
    print(f"a job's output of {args.lines} lines, median of {args.rounds} reads each:")
    print("  read                        bytes   GetLogEvents calls   seconds   ratio to whole")
    for tail_bytes, reads in figures.items():
        seconds = median([seconds for seconds, _, _ in reads])
        _, size, calls = reads[-1]
        what = "whole, from the head (baseline)" if not tail_bytes else f"tail of {tail_bytes // 1024} KiB, backwards"
        print(f"  {what:<32} {size:>9}   {calls:>8}   {seconds:>12.3f}   {seconds / whole:>8.3f}x")


if __name__ == "__main__":
    main()
