"""Which gRPC server model to serve with: the cost of a unary call and of an idle stream, measured
on this machine for each model, in one run.

    .venv/bin/python bench/server_models.py [--calls 4000] [--streams 1000]

Each model serves BatchSystem's IssueJob (answering a fixed id, no work: what is measured is the
server's own per-call cost) and GetUpdatedJob (a stream that waits for an update that never
comes), in a separate process. A client process calls IssueJob one call at a time and then from
8 threads, and then opens idle streams. Printed per model: the server's CPU time per call (user +
system, from /proc), calls per second, and per idle stream the server's memory and threads.

Models:
  sync            grpc.server with a thread pool: batchgate's server before issue 10
  aio             grpc.aio, handlers are coroutines that answer in the event loop
  aio+executor    grpc.aio, each unary call's work handed to a thread pool and awaited
  aio+sync        grpc.aio given plain (non-async) handlers, which it runs in its thread pool
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import threading
import time
from concurrent import futures

import grpc
import psutil

from batchgate.v1 import batchgate_pb2 as pb
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc

MODELS = ("sync", "aio", "aio+executor", "aio+sync")
ISSUERS = 8


# ---- the server side -------------------------------------------------------------------------


class SyncServicer(pb_grpc.BatchSystemServicer):
    def __init__(self) -> None:
        self.never = threading.Event()

    def IssueJob(self, request: pb.IssueJobRequest, context: grpc.ServicerContext) -> pb.IssueJobResponse:
        return pb.IssueJobResponse(job_id=1)

    def GetUpdatedJob(self, request: pb.GetUpdatedJobRequest, context: grpc.ServicerContext):  # type: ignore[no-untyped-def]
        while context.is_active():
            self.never.wait(1.0)
        yield from ()


class AioServicer(pb_grpc.BatchSystemServicer):
    def __init__(self, executor: futures.Executor | None) -> None:
        self.executor = executor
        self.never = asyncio.Event()

    async def IssueJob(self, request: pb.IssueJobRequest, context: grpc.aio.ServicerContext) -> pb.IssueJobResponse:
        if self.executor is not None:
            return await asyncio.get_running_loop().run_in_executor(self.executor, lambda: pb.IssueJobResponse(job_id=1))
        return pb.IssueJobResponse(job_id=1)

    async def GetUpdatedJob(self, request: pb.GetUpdatedJobRequest, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
        await self.never.wait()
        yield pb.GetUpdatedJobResponse()


class AioSyncUnary(AioServicer):
    """Plain IssueJob (grpc.aio runs it in its migration thread pool); the stream stays async."""

    def IssueJob(self, request: pb.IssueJobRequest, context: grpc.ServicerContext) -> pb.IssueJobResponse:  # type: ignore[override]
        return pb.IssueJobResponse(job_id=1)


def serve(model: str, port_file: str) -> None:
    options = [("grpc.max_concurrent_streams", 100_000)]
    if model == "sync":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=64), options=options)
        pb_grpc.add_BatchSystemServicer_to_server(SyncServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        _announce(port_file, port)
        server.wait_for_termination()
        return

    async def run() -> None:
        pool = futures.ThreadPoolExecutor(max_workers=16)
        server = grpc.aio.server(migration_thread_pool=pool, options=options)
        servicer = {"aio": AioServicer(None), "aio+executor": AioServicer(pool), "aio+sync": AioSyncUnary(None)}[model]
        pb_grpc.add_BatchSystemServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        _announce(port_file, port)
        await server.wait_for_termination()

    asyncio.run(run())


def _announce(port_file: str, port: int) -> None:
    with open(port_file + ".partial", "w") as file:
        file.write(str(port))
    os.replace(port_file + ".partial", port_file)


# ---- the client side -------------------------------------------------------------------------


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def measure(model: str, calls: int, streams: int, scratch: str) -> dict[str, float]:
    port_file = os.path.join(scratch, f"{model}.port")
    server = subprocess.Popen([sys.executable, __file__, "--serve", model, "--port-file", port_file])
    try:
        while not os.path.exists(port_file):
            time.sleep(0.05)
        address = f"127.0.0.1:{open(port_file).read()}"
        process = psutil.Process(server.pid)
        channel = grpc.insecure_channel(address)
        stub = pb_grpc.BatchSystemStub(channel)
        request = pb.IssueJobRequest(spec=pb.JobSpec(command="true", cores=0.1, memory=1 << 20, job_set="bench"))
        for _ in range(200):  # warm up
            stub.IssueJob(request)
        figures: dict[str, float] = {}

        before, started = cpu_seconds(process), time.perf_counter()
        for _ in range(calls // 4):
            stub.IssueJob(request)
        figures["sequential_us"] = (cpu_seconds(process) - before) / (calls // 4) * 1e6
        figures["sequential_rate"] = (calls // 4) / (time.perf_counter() - started)

        def issue(count: int) -> None:
            for _ in range(count):
                stub.IssueJob(request)

        before, started = cpu_seconds(process), time.perf_counter()
        with futures.ThreadPoolExecutor(ISSUERS) as pool:
            list(pool.map(issue, [calls // ISSUERS] * ISSUERS))
        figures["concurrent_us"] = (cpu_seconds(process) - before) / calls * 1e6
        figures["concurrent_rate"] = calls / (time.perf_counter() - started)

        # Idle streams: as many as the model can hold without refusing work (sync: its pool).
        rss_before, threads_before = process.memory_info().rss, process.num_threads()
        wanted = streams if model != "sync" else min(streams, 60)
        channels = [grpc.insecure_channel(address) for _ in range(10)]
        opened = [
            pb_grpc.BatchSystemStub(channels[index % len(channels)]).GetUpdatedJob(pb.GetUpdatedJobRequest())
            for index in range(wanted)
        ]
        time.sleep(3)  # let the server take every stream in
        figures["streams"] = wanted
        figures["stream_kib"] = (process.memory_info().rss - rss_before) / wanted / 1024
        figures["stream_threads"] = (process.num_threads() - threads_before) / wanted
        # And a unary call while they are open: does the server still answer?
        try:
            stub.IssueJob(request, timeout=5)
            figures["answers_with_streams"] = 1
        except grpc.RpcError:
            figures["answers_with_streams"] = 0
        for stream in opened:
            stream.cancel()
        for extra in channels:
            extra.close()
        channel.close()
        return figures
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2, help="each model is measured this many times, alternating")
    parser.add_argument("--serve", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port_file)
        return
    import tempfile

    results: dict[str, list[dict[str, float]]] = {model: [] for model in MODELS}
    with tempfile.TemporaryDirectory() as scratch:
        for round_number in range(args.rounds):
            for model in MODELS:
                for stale in os.listdir(scratch):
                    os.unlink(os.path.join(scratch, stale))
                results[model].append(measure(model, args.calls, args.streams, scratch))
    print(f"server models: IssueJob answered with no work, {args.calls} calls; idle GetUpdatedJob streams; {os.cpu_count()} cores")
    print(f"  {'model':<13} {'1 caller':>17} {'8 callers':>17}   idle streams")
    for model in MODELS:
        runs = results[model]

        def best(key: str, runs: list[dict[str, float]] = runs) -> float:
            return min(run[key] for run in runs)

        def top(key: str, runs: list[dict[str, float]] = runs) -> float:
            return max(run[key] for run in runs)

        streams = runs[-1]
        print(
            f"  {model:<13} {best('sequential_us'):5.0f} us/call {top('sequential_rate'):5.0f}/s"
            f" {best('concurrent_us'):4.0f} us/call {top('concurrent_rate'):5.0f}/s"
            f"   {int(streams['streams'])}: {streams['stream_kib']:.1f} KiB and {streams['stream_threads']:.2f} threads each,"
            f" IssueJob {'answered' if streams['answers_with_streams'] else 'NOT answered'}"
        )
    print("  (us/call: the server's CPU time per call, the least of the rounds; /s: calls per second, the most)")


if __name__ == "__main__":
    main()
