"""A job's output from CloudWatch Logs (moto's, fed live from the containers: moto_live_logs.py):
following a running job, tails of a long log, a failed job's update quoting its last lines, and
jobs without a log stream."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pytest
from awsbatch_recorder import DriverFactory
from harness import RunningService, collect_updates, spec, wait_until
from driver_recording import make_job
from moto_batch import MotoBatch, job_transitions, register_definition

from batchgate.driver import SubmittedJob
from batchgate.endings import ExitReason
from batchgate.errors import NoOutput, from_rpc_error
from batchgate.services.awsbatch.driver import AwsBatchDriver
from batchgate.v1 import batchgate_pb2 as pb

STDOUT, STDERR = pb.OUTPUT_STREAM_STDOUT, pb.OUTPUT_STREAM_STDERR
LINES = 20_000  # more than one GetLogEvents page (10,000 events)


def submit(driver: AwsBatchDriver, job_id: int, command: str, **fields: object) -> SubmittedJob:
    job = make_job(job_id, command, **fields)
    (backing_id,) = driver.submit([job])
    assert backing_id
    return SubmittedJob(job, backing_id)


def read(driver: AwsBatchDriver, job: SubmittedJob, stream: int = STDOUT, tail_bytes: int = 0, follow: bool = False) -> bytes:
    return b"".join(driver.output(job, stream, tail_bytes, follow))


class Follower(threading.Thread):
    """Follows a job's output in a thread, as the kit does, keeping what arrives."""

    def __init__(self, driver: AwsBatchDriver, job: SubmittedJob) -> None:
        super().__init__(daemon=True)
        self.chunks = driver.output(job, STDOUT, 0, True)
        self.received = b""
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            for data in self.chunks:
                self.received += data
        except BaseException as error:  # noqa: BLE001 - handed to the test
            self.error = error


def test_following_a_running_job_until_it_ends(attach: DriverFactory, tmp_path: Path) -> None:
    driver, events = attach()
    gate = tmp_path / "gate"
    job = submit(driver, 1, f"echo first; echo oops >&2; while [ ! -e {gate} ]; do sleep 0.1; done; echo last")
    follower = Follower(driver, job)

    wait_until(lambda: follower.received == b"first\noops\n" or follower.received == b"oops\nfirst\n", message="the first lines")
    assert follower.is_alive() and 1 not in events.ended_ids()  # the job runs, and so does the stream
    gate.touch()
    follower.join(timeout=60)

    assert not follower.is_alive() and follower.error is None
    # stdout and stderr lines written at once may come in either order (Docker reads each apart)
    assert follower.received in (b"first\noops\nlast\n", b"oops\nfirst\nlast\n")
    assert events.outcome(1).exit_reason is ExitReason.FINISHED
    # One log stream for both: STDERR answers with the stdout lines too.
    assert read(driver, job, STDERR) == read(driver, job) == follower.received


def test_a_follower_that_goes_away_stops_reading(attach: DriverFactory, tmp_path: Path) -> None:
    driver, _ = attach()
    gate = tmp_path / "gate"
    job = submit(driver, 1, f"echo waiting; while [ ! -e {gate} ]; do sleep 0.1; done")
    follower = Follower(driver, job)
    wait_until(lambda: follower.received == b"waiting\n", message="the first line")

    follower.chunks.cancel()  # the client went away while the job runs

    follower.join(timeout=30)
    assert not follower.is_alive() and follower.error is None
    gate.touch()


def test_tails_of_a_long_log_read_only_its_end(attach: DriverFactory) -> None:
    driver, events = attach()
    job = submit(driver, 1, f"seq 1 {LINES}")
    assert events.outcome(1, timeout=120).exit_reason is ExitReason.FINISHED
    whole = read(driver, job)
    assert whole == "".join(f"{number}\n" for number in range(1, LINES + 1)).encode()

    before = driver.logs.counts["get_log_events"]
    assert read(driver, job, tail_bytes=100) == whole[-100:]
    assert driver.logs.counts["get_log_events"] - before == 1  # the end alone, not 20,000 events

    # A tail longer than one page of events reads back across pages.
    assert read(driver, job, tail_bytes=70_000) == whole[-70_000:]
    assert read(driver, job, tail_bytes=len(whole) + 10) == whole
    # Following an ended job's tail gives the tail, and ends.
    assert read(driver, job, tail_bytes=6, follow=True) == whole[-6:]


def test_a_failed_jobs_update_quotes_its_last_lines(awsbatch: RunningService) -> None:
    stub = awsbatch.stub()
    noise = "".join(f"echo step {number} >&2; " for number in range(40))
    job_id = stub.IssueJob(pb.IssueJobRequest(spec=spec(f"{noise} echo 'no such file: input.csv' >&2; exit 3"))).job_id

    (update,) = collect_updates(stub, 1)

    assert (update.job_id, update.exit_reason, update.exit_status) == (job_id, pb.EXIT_REASON_FAILED, 3)
    assert update.message.endswith("stderr ends:\nstep 31\n" + "".join(f"step {n}\n" for n in range(32, 40)) + "no such file: input.csv")
    assert "step 30" not in update.message  # the last ten lines, not all of them


def test_a_job_with_no_log_stream_says_why(awsbatch: RunningService, moto: MotoBatch) -> None:
    # Its image cannot be pulled (CannotPullContainerError on AWS): it never runs, so AWS Batch
    # never gives it a log stream.
    register_definition(moto, "batchgate-test-no-image", "batchgate-no-such-image:1", {})
    stub = awsbatch.stub()
    job = spec("echo never", aws_batch=pb.AwsBatchOptions(job_definition="batchgate-test-no-image"))
    job_id = stub.IssueJob(pb.IssueJobRequest(spec=job)).job_id
    (update,) = collect_updates(stub, 1)
    assert update.job_id == job_id and update.exit_reason != pb.EXIT_REASON_FINISHED

    for follow in (False, True):  # nothing to wait for: it has ended
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.GetJobOutput(pb.GetJobOutputRequest(job_id=job_id, follow=follow), timeout=30))
        assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        error = from_rpc_error(caught.value)
        assert isinstance(error, NoOutput) and "without a log stream: its container never ran" in error.message, error


def test_a_job_not_started_is_waited_for_and_an_expired_stream_is_named(attach: DriverFactory, moto: MotoBatch) -> None:
    driver, events = attach()
    with job_transitions(moto, {"progression": "manual", "times": 10**9}):
        job = submit(driver, 1, "echo at last")
        with pytest.raises(NoOutput, match="no log stream until it runs"):
            read(driver, job)
        follower = Follower(driver, job)  # follows a job that has not started: it waits for it
    follower.join(timeout=60)
    assert not follower.is_alive() and follower.error is None and follower.received == b"at last\n"
    assert events.outcome(1).exit_reason is ExitReason.FINISHED

    # Its log stream gone from CloudWatch Logs (the log group's retention, or deleted).
    detail = moto.client().describe_jobs(jobs=[job.backing_id])["jobs"][0]
    moto.client("logs").delete_log_stream(logGroupName="/aws/batch/job", logStreamName=detail["container"]["logStreamName"])
    with pytest.raises(NoOutput, match="is not in CloudWatch Logs"):
        read(driver, job)


def test_a_stream_the_job_named_a_file_for_is_read_from_that_file(attach: DriverFactory, tmp_path: Path) -> None:
    driver, events = attach()
    named = tmp_path / "out.txt"  # under /tmp, which the job definition mounts at the same path
    job = submit(driver, 1, "echo to the file; echo to the log >&2", stdout_path=str(named))
    assert events.outcome(1).exit_reason is ExitReason.FINISHED

    assert read(driver, job) == b"to the file\n"
    assert read(driver, job, STDERR) == b"to the log\n"  # the rest went to its log
    named.unlink()
    with pytest.raises(NoOutput, match=f"{named}, which does not exist"):
        read(driver, job)
