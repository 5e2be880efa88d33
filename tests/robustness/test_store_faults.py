"""A job store that cannot be written: a full disk (a real, small tmpfs under the store) and a
lock held by another process. Calls fail UNAVAILABLE saying why, the service keeps serving,
jobs that end meanwhile are reported once there is room again, and the store is intact."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from harness import RunningService, collect_updates, spec, start_service, updates_within, wait_until

from batchgate.errors import StoreUnavailable, from_rpc_error
from batchgate.v1 import batchgate_pb2 as pb


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a real file system that fills up."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(directory: Path) -> Path:
    """Fill the file system under `directory` to the last byte; returns the filler file."""
    filler = directory / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 1):  # big blocks, then what is left
            try:
                while True:
                    os.write(descriptor, b"\0" * size)
            except OSError as error:
                assert error.errno == errno.ENOSPC
    finally:
        os.close(descriptor)
    return filler


def test_a_full_disk_fails_calls_clearly_and_loses_nothing(tmp_path: Path, small_disk: Path) -> None:
    store_dir = small_disk / "local"
    service = start_service("local", tmp_path / "local", "--state-dir", str(store_dir), "--cores", "2", "--kill-grace", "1")
    try:
        stub = service.stub()
        (before,) = stub.IssueJobs(pb.IssueJobsRequest(specs=[spec("true")])).job_ids
        (first,) = collect_updates(stub, 1)
        (running,) = stub.IssueJobs(pb.IssueJobsRequest(specs=[spec("sleep 2")])).job_ids
        filler = fill(small_disk)

        with pytest.raises(grpc.RpcError) as caught:
            stub.IssueJob(pb.IssueJobRequest(spec=spec("true")), timeout=30)
        refused = from_rpc_error(caught.value)
        assert isinstance(refused, StoreUnavailable) and "full" in refused.message
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        # The running job ends while the store cannot record it: its update waits.
        assert not updates_within(stub, 4.0, after=first.sequence)
        assert list(stub.ListIssuedJobs(pb.ListIssuedJobsRequest()).job_ids) == [running]

        filler.unlink()  # the operator makes room
        (ended,) = collect_updates(stub, 1, after=first.sequence)
        assert (ended.job_id, ended.exit_reason) == (running, pb.EXIT_REASON_FINISHED)
        (after,) = stub.IssueJobs(pb.IssueJobsRequest(specs=[spec("true")])).job_ids
        assert after > running > before
        every = collect_updates(stub, 3)
        assert [update.job_id for update in every] == [before, running, after]
        assert not updates_within(stub, 1.0, after=every[-1].sequence)
    finally:
        service.stop()
    check = sqlite3.connect(store_dir / "local.sqlite").execute("PRAGMA integrity_check").fetchone()
    assert check == ("ok",)


def test_a_held_lock_fails_issue_with_unavailable_and_passes(local_service: RunningService) -> None:
    stub = local_service.stub()
    holder = sqlite3.connect(local_service.state_dir / "local.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(grpc.RpcError) as caught:
            stub.IssueJob(pb.IssueJobRequest(spec=spec("true")), timeout=60)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    wait_until(lambda: stub.IssueJob(pb.IssueJobRequest(spec=spec("true"))).job_id > 0, message="issue to work again")
