"""GetJobOutput on every target: a finished job's output whole and its tail, following a job while
it runs, a job whose output the service does not have (FAILED_PRECONDITION saying why), an
unknown job (NOT_FOUND), and the end of a failed job's stderr in its update."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from harness import collect_updates, spec
from targets import Target

from batchgate.errors import InvalidArgument, JobNotFound, NoOutput, from_rpc_error
from batchgate.output import ONE_LOG_FEATURE
from batchgate.v1 import batchgate_pb2 as pb

STDOUT, STDERR = pb.OUTPUT_STREAM_STDOUT, pb.OUTPUT_STREAM_STDERR


def output(target: Target, job_id: int, stream: int = STDOUT, *, tail_bytes: int = 0) -> bytes:
    request = pb.GetJobOutputRequest(job_id=job_id, stream=stream, tail_bytes=tail_bytes)
    return b"".join(response.data for response in target.stub().GetJobOutput(request, timeout=30))


def output_error(target: Target, request: pb.GetJobOutputRequest) -> BaseException:
    with pytest.raises(grpc.RpcError) as caught:
        list(target.stub().GetJobOutput(request, timeout=30))
    return from_rpc_error(caught.value)


def issue(target: Target, job: pb.JobSpec) -> int:
    return target.stub().IssueJob(pb.IssueJobRequest(spec=job)).job_id


def needs_output(target: Target) -> None:
    if not target.keeps_output:
        pytest.skip(f"{target.name} keeps no job output: test_a_job_whose_output_is_not_there_says_why checks it says so")


def check_stdout(target: Target, answered: bytes, stdout: bytes, stderr: bytes) -> bytes:
    """Check what STDOUT `answered` for a job that wrote `stdout` and `stderr`; return what STDERR
    must answer. A target that merges them answers both streams' lines with each, each stream's
    in its order (lines written to the two at once may come in either order)."""
    if not target.merges_output:
        assert answered == stdout
        return stderr
    pending = [stdout.splitlines(keepends=True), stderr.splitlines(keepends=True)]
    for line in answered.splitlines(keepends=True):
        stream = next((lines for lines in pending if lines and lines[0] == line), None)
        assert stream is not None, f"{line!r} in {answered!r} is not the next line of either stream"
        stream.pop(0)
    assert pending == [[], []], f"{answered!r} lacks {pending}"
    return answered


def test_a_finished_jobs_output_whole_and_its_tail(target: Target) -> None:
    needs_output(target)
    job_id = issue(target, spec("printf 'one\\ntwo\\nthree\\n'; printf 'to stderr\\n' >&2"))
    (update,) = collect_updates(target.stub(), 1)
    assert update.job_id == job_id and update.exit_reason == pb.EXIT_REASON_FINISHED
    stdout = output(target, job_id)
    # A client learns that the two streams are one log (and shows it once) from the capabilities.
    capabilities = target.stub().GetCapabilities(pb.GetCapabilitiesRequest())
    one_log = [ONE_LOG_FEATURE in each.features for each in (capabilities, *capabilities.backends)]
    assert any(one_log) == target.merges_output
    assert output(target, job_id, STDERR) == check_stdout(target, stdout, b"one\ntwo\nthree\n", b"to stderr\n")
    assert output(target, job_id, tail_bytes=6) == stdout[-6:]
    assert output(target, job_id, tail_bytes=10_000) == stdout
    # Unspecified means stdout, as for a client that sets no stream.
    assert output(target, job_id, pb.OUTPUT_STREAM_UNSPECIFIED) == stdout


def test_following_a_job_streams_what_it_writes_until_it_ends(target: Target, tmp_path: Path) -> None:
    needs_output(target)
    gate = tmp_path / "gate"
    command = f"echo started; while [ ! -e {gate} ]; do sleep 0.1; done; echo ended; echo done >&2"
    job_id = issue(target, spec(command))
    # Followed from before it runs: the stream waits for the job, then carries its output.
    stream = target.stub().GetJobOutput(pb.GetJobOutputRequest(job_id=job_id, follow=True), timeout=120)
    received = next(stream).data
    while not received.endswith(b"\n"):
        received += next(stream).data
    assert received == b"started\n"
    assert job_id in target.stub().ListIssuedJobs(pb.ListIssuedJobsRequest()).job_ids  # still running
    gate.touch()
    received += b"".join(response.data for response in stream)  # ends by itself once the job has
    stderr = check_stdout(target, received, b"started\nended\n", b"done\n")
    # Following a job that has ended gives what it wrote, and ends.
    follow_stderr = pb.GetJobOutputRequest(job_id=job_id, stream=STDERR, follow=True)
    assert b"".join(response.data for response in target.stub().GetJobOutput(follow_stderr, timeout=30)) == stderr
    follow_the_tail = pb.GetJobOutputRequest(job_id=job_id, tail_bytes=6, follow=True)
    assert b"".join(response.data for response in target.stub().GetJobOutput(follow_the_tail, timeout=30)) == received[-6:]


def test_a_job_whose_output_is_not_there_says_why(target: Target, tmp_path: Path) -> None:
    if not target.keeps_output:  # no job has any: the backend says so, not an empty answer
        job_id = issue(target, spec("echo said"))
        collect_updates(target.stub(), 1)
        error = output_error(target, pb.GetJobOutputRequest(job_id=job_id, follow=True))
        assert isinstance(error, NoOutput) and "keeps no job output" in error.message, error
        return
    missing = tmp_path / "no-such-directory" / "out.txt"
    job_id = issue(target, spec("echo lost", stdout_path=str(missing)))
    (update,) = collect_updates(target.stub(), 1)
    assert update.job_id == job_id
    error = output_error(target, pb.GetJobOutputRequest(job_id=job_id))
    assert isinstance(error, NoOutput), error
    assert str(missing) in error.message and "does not exist" in error.message


def test_output_of_an_unknown_job_is_not_found(target: Target) -> None:
    error = output_error(target, pb.GetJobOutputRequest(job_id=987654321))
    assert isinstance(error, JobNotFound) and "987654321" in error.message
    for request, field in [
        (pb.GetJobOutputRequest(job_id=0), "job_id"),
        (pb.GetJobOutputRequest(job_id=1, tail_bytes=-1), "tail_bytes"),
        (pb.GetJobOutputRequest(job_id=1, stream=7), "stream"),  # type: ignore[arg-type]
    ]:
        refused = output_error(target, request)
        assert isinstance(refused, InvalidArgument) and refused.field == field


def test_a_failed_jobs_update_ends_with_its_stderr(target: Target) -> None:
    needs_output(target)
    lines = "".join(f"echo noise {number} >&2; " for number in range(30))
    job_id = issue(target, spec(f"{lines} echo 'cannot open input.csv' >&2; exit 4"))
    (update,) = collect_updates(target.stub(), 1)
    assert update.job_id == job_id and (update.exit_reason, update.exit_status) == (pb.EXIT_REASON_FAILED, 4)
    assert update.message.endswith("cannot open input.csv")
    # Bounded: the last few lines, not all thirty.
    assert "noise 29" in update.message and "noise 0\n" not in update.message
    assert len(update.message) <= 2048 + 200


def test_a_job_that_finishes_keeps_its_message_clean(target: Target) -> None:
    job_id = issue(target, spec("echo warning >&2; true"))
    (update,) = collect_updates(target.stub(), 1)
    assert update.job_id == job_id and update.exit_reason == pb.EXIT_REASON_FINISHED
    assert "warning" not in update.message
    if target.keeps_output:
        assert output(target, job_id, STDERR) == b"warning\n"
