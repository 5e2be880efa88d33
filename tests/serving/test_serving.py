"""Serving many watchers: an open GetUpdatedJob stream holds no thread, so no number of them stops a
service from answering; limits refuse with RESOURCE_EXHAUSTED naming the flag that sets them; a
subscriber that stops reading costs the service no memory and later gets everything it missed.

(The figures, at full size, are bench/scale.py's.)
"""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import grpc
import psutil
import pytest
from harness import RunningService, collect_updates, spec, start_service, wait_until
from prometheus_client.parser import text_string_to_metric_families

from batchgate.errors import LimitExceeded, from_rpc_error
from batchgate.v1 import batchgate_pb2 as pb
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc

STREAMS = 200
JOB_SETS = 10


def own_connection(address: str) -> grpc.Channel:
    """A channel on a connection of its own: grpc shares one between channels with equal
    arguments, and a stream limit per peer counts per connection."""
    return grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


def open_streams(service: RunningService) -> float:
    """The service's batchgate_stream_subscribers gauge."""
    with urllib.request.urlopen(f"http://{service.metrics_address}/metrics", timeout=10) as response:
        text = response.read().decode()
    (gauge,) = (family for family in text_string_to_metric_families(text) if family.name == "batchgate_stream_subscribers")
    return sum(sample.value for sample in gauge.samples)


@pytest.fixture
def service(tmp_path: Path) -> RunningService:
    running = start_service("local", tmp_path / "local", "--cores", "2", "--memory", "2G", "--workers", "8")
    yield running
    running.kill()


def test_200_open_streams_hold_no_thread_and_each_gets_its_updates_once(service: RunningService) -> None:
    process = psutil.Process(service.process.pid)
    job_sets = [f"workflow-{index}" for index in range(JOB_SETS)]

    async def scenario() -> tuple[int, int, list[tuple[str, list[pb.UpdatedJob]]], dict[str, int]]:
        channels = [grpc.aio.insecure_channel(service.address) for _ in range(10)]
        stubs = [pb_grpc.BatchSystemStub(channel) for channel in channels]
        threads_before = process.num_threads()
        # Every tenth stream follows every job set; the others one job set each.
        watched = ["" if index % 10 == 0 else job_sets[index % JOB_SETS] for index in range(STREAMS)]
        streams = [
            stubs[index % len(stubs)].GetUpdatedJob(pb.GetUpdatedJobRequest(job_set=job_set), timeout=60)
            for index, job_set in enumerate(watched)
        ]
        for stream in streams:
            await stream.initial_metadata()  # the service has taken the stream in
        threads_with_streams = process.num_threads()
        # The deadline is the one the sync server missed with 70 streams open.
        issued = {
            job_set: (await stubs[0].IssueJob(pb.IssueJobRequest(spec=spec("true", job_set=job_set)), timeout=5)).job_id
            for job_set in job_sets
        }

        async def read(stream: grpc.aio.UnaryStreamCall, expected: int) -> list[pb.UpdatedJob]:
            found: list[pb.UpdatedJob] = []
            async for response in stream:
                found.extend(response.updates)
                if len(found) >= expected:
                    break
            stream.cancel()
            return found

        received = await asyncio.gather(
            *(read(stream, JOB_SETS if not job_set else 1) for stream, job_set in zip(streams, watched, strict=True))
        )
        for channel in channels:
            await channel.close()
        return threads_before, threads_with_streams, list(zip(watched, received, strict=True)), issued

    threads_before, threads_with_streams, received, issued = asyncio.run(scenario())
    assert threads_with_streams - threads_before < 5, "open streams must not hold threads"
    for job_set, updates in received:
        expected = sorted(issued.values()) if not job_set else [issued[job_set]]
        assert sorted(update.job_id for update in updates) == expected
        assert all(update.exit_reason == pb.EXIT_REASON_FINISHED for update in updates)


def test_stream_and_batch_limits_answer_resource_exhausted_naming_the_flag(tmp_path: Path) -> None:
    service = start_service(
        "local",
        tmp_path / "local",
        "--cores", "2",
        "--max-streams", "4",
        "--max-streams-per-peer", "2",
        "--max-issue-batch", "5",
        "--max-message-size", "64K",
    )  # fmt: skip
    try:
        first, second, third = (own_connection(service.address) for _ in range(3))

        def open_on(channel: grpc.Channel, job_set: str = "") -> grpc.Call:
            stream = pb_grpc.BatchSystemStub(channel).GetUpdatedJob(pb.GetUpdatedJobRequest(job_set=job_set), timeout=60)
            stream.initial_metadata()  # returns once the service took the stream in, or refused it
            return stream

        def refusal(stream: grpc.Call) -> LimitExceeded:
            with pytest.raises(grpc.RpcError) as failure:
                next(stream)
            assert failure.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            error = from_rpc_error(failure.value)
            assert isinstance(error, LimitExceeded), error
            return error

        held = [open_on(first), open_on(first)]
        per_peer = refusal(open_on(first))
        assert (per_peer.limit, per_peer.value) == ("--max-streams-per-peer", 2)
        assert "--max-streams-per-peer 2" in per_peer.message

        held += [open_on(second, "watched"), open_on(second)]
        in_all = refusal(open_on(third))
        assert (in_all.limit, in_all.value) == ("--max-streams", 4)
        assert "--max-streams 4" in in_all.message

        # A stream that ends gives its place back.
        held.pop(0).cancel()
        wait_until(lambda: open_streams(service) == 3, message="the service to see the stream end")
        held.append(open_on(third, "watched"))
        # The streams that were admitted work.
        stub = pb_grpc.BatchSystemStub(second)
        job_id = stub.IssueJob(pb.IssueJobRequest(spec=spec("true", job_set="watched")), timeout=10).job_id
        assert [update.job_id for update in next(held[1]).updates] == [job_id]
        assert [update.job_id for update in next(held[-1]).updates] == [job_id]

        with pytest.raises(grpc.RpcError) as too_many:
            stub.IssueJobs(pb.IssueJobsRequest(specs=[spec("true")] * 6), timeout=10)
        error = from_rpc_error(too_many.value)
        assert isinstance(error, LimitExceeded) and error.limit == "--max-issue-batch", error
        assert "specs" in error.message and "--max-issue-batch 5" in error.message

        with pytest.raises(grpc.RpcError) as too_big:
            stub.IssueJob(pb.IssueJobRequest(spec=spec("echo " + "x" * 100_000)), timeout=10)
        assert too_big.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in (too_big.value.details() or "")
        assert stub.ListIssuedJobs(pb.ListIssuedJobsRequest(), timeout=10).job_ids == []
        for stream in held:
            stream.cancel()
        for channel in (first, second, third):
            channel.close()
    finally:
        service.kill()


def test_a_subscriber_that_stops_reading_costs_no_memory_and_later_gets_everything(tmp_path: Path) -> None:
    # A small in-memory tail, and updates of 4 KiB each (their job set's name is that long), so
    # what the stuck subscriber misses is many times what the service may keep for it.
    service = start_service("local", tmp_path / "local", "--cores", "2", "--update-tail", "100")
    try:
        process = psutil.Process(service.process.pid)
        stub = service.stub()
        job_set = "slow-" + "x" * 4000
        batch, batches = 200, 20

        def run_batch(after: int) -> list[pb.UpdatedJob]:
            stub.IssueJobs(pb.IssueJobsRequest(specs=[spec("true", job_set=job_set)] * batch), timeout=30)
            return collect_updates(stub, batch, after=after, job_set=job_set)

        cursor = run_batch(0)[-1].sequence  # warm the service's allocators up
        cursor = run_batch(cursor)[-1].sequence
        memory_before = process.memory_info().rss

        stuck_channel = own_connection(service.address)
        stuck = pb_grpc.BatchSystemStub(stuck_channel).GetUpdatedJob(
            pb.GetUpdatedJobRequest(after_sequence=cursor, job_set=job_set), timeout=300
        )
        stuck.initial_metadata()
        missed: list[int] = []
        update_bytes = 0
        for _ in range(batches):
            updates = run_batch(cursor)
            missed += [update.job_id for update in updates]
            update_bytes += sum(update.ByteSize() for update in updates)
            cursor = updates[-1].sequence
        growth = process.memory_info().rss - memory_before
        assert update_bytes > 15 * 1024**2
        # Queued for the subscriber, the updates would take at least their own size.
        assert growth < update_bytes / 2, f"the service grew by {growth} bytes while {update_bytes} bytes of updates passed"

        got: list[pb.UpdatedJob] = []
        for response in stuck:
            got.extend(response.updates)
            if len(got) >= len(missed):
                break
        stuck.cancel()
        stuck_channel.close()
        sequences = [update.sequence for update in got]
        assert sequences == sorted(set(sequences))
        assert [update.job_id for update in got] == missed
    finally:
        service.kill()
