"""What people watching the status page cost a busy service: one local backend's throughput
with no viewer and with many browsers' live feeds (/events) open, in the same run, as ratios;
and the service's threads either way (a viewer is a coroutine, not a thread).

    .venv/bin/python bench/statuspage_viewers.py [--viewers 100] [--jobs 2000] [--rounds 3]

Each round measures issue -> every update received (IssueJobs batches, trivial jobs) without
viewers and with them, in alternating order. The viewers run in this process, on one asyncio
loop, and read every update: the bench checks that each got all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
from harness import start_service  # noqa: E402
from local_throughput import batched_rate  # noqa: E402


class Viewers:
    """`count` live feeds of a status page, read on an asyncio loop in a thread."""

    def __init__(self, metrics_address: str, count: int) -> None:
        self._address = metrics_address
        self.updates = [0] * count  # updates each viewer received
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._connected = threading.Semaphore(0)
        self._tasks: list[asyncio.Task[None]] = []
        asyncio.run_coroutine_threadsafe(self._start(count), self._loop).result()
        for _ in range(count):
            if not self._connected.acquire(timeout=60):
                raise RuntimeError("viewers did not connect")

    async def _start(self, count: int) -> None:
        self._tasks = [asyncio.create_task(self._view(index)) for index in range(count)]

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _view(self, index: int) -> None:
        host, port = self._address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port), limit=64 * 1024**2)  # an event is one line, up to MiBs
        writer.write(f"GET /events HTTP/1.1\r\nHost: {self._address}\r\nAccept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"viewer {index}: {status!r}")
        self._connected.release()
        try:
            while line := await reader.readline():
                if line.startswith(b"data: ["):  # an `updates` event: a JSON list of objects
                    self.updates[index] += line.count(b'{"sequence":')  # cheaper than parsing: the bench shares the cores
        finally:
            writer.close()

    def wait_for(self, count: int, timeout: float = 120) -> None:
        """Until every viewer has received `count` updates."""
        deadline = time.monotonic() + timeout
        while min(self.updates) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"viewers received {min(self.updates)}-{max(self.updates)} of {count} updates")
            time.sleep(0.05)
        if max(self.updates) != count:
            raise RuntimeError(f"a viewer received {max(self.updates)} updates, {count} were published")

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    rates: dict[str, list[float]] = {"none": [], "viewers": []}
    threads = {"none": 0, "viewers": 0}
    with tempfile.TemporaryDirectory() as state:
        service = start_service("local", Path(state), "--cores", "2", "--log-level", "WARNING")
        process = psutil.Process(service.process.pid)
        try:
            stub = service.stub()
            batched_rate(stub, 200, args.batch)  # warm up
            for round_number in range(args.rounds):
                for case in ("none", "viewers") if round_number % 2 == 0 else ("viewers", "none"):
                    if case == "none":
                        threads["none"] = process.num_threads()
                        rates["none"].append(batched_rate(stub, args.jobs, args.batch))
                        continue
                    viewers = Viewers(service.metrics_address, args.viewers)
                    try:
                        threads["viewers"] = process.num_threads()
                        rates["viewers"].append(batched_rate(stub, args.jobs, args.batch))
                        viewers.wait_for(args.jobs)  # every viewer saw every update
                    finally:
                        viewers.close()
        finally:
            service.stop()
    ratios = [watched / alone for watched, alone in zip(rates["viewers"], rates["none"], strict=True)]
    load = os.getloadavg()[0]
    print(
        f"status page viewers: local backend, {args.jobs} trivial jobs x {args.rounds} rounds, IssueJobs x{args.batch}, "
        f"{os.cpu_count()} cores (load average {load:.1f}: the viewers share them)"
    )
    print(f"  no viewer             {statistics.median(rates['none']):7.0f} jobs/s")
    print(
        f"  {args.viewers} viewers on /events {statistics.median(rates['viewers']):7.0f} jobs/s  "
        f"{statistics.median(ratios):.2f}x no viewer (rounds {min(ratios):.2f}-{max(ratios):.2f})"
    )
    print(f"  service threads: {threads['none']} alone, {threads['viewers']} with {args.viewers} viewers open; each viewer got every update")


if __name__ == "__main__":
    main()
