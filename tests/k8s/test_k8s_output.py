"""GetJobOutput on the Kubernetes backend: the pod's log (stdout and stderr as one), read through
the official client from the emulated API server, whose kubelet keeps each container's log: a
followed job streams until it ends, a tail in bytes of a long log, a failed job's update quoting
the end of its log, a pod that is gone or has not started, and the API server's own answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness import RunningService, collect_updates, job_output, job_output_refused, spec, start_service, wait_until
from k8s_cluster import NAMESPACE, EmulatedCluster
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from batchgate.v1 import batchgate_pb2 as pb

STDOUT, STDERR = pb.OUTPUT_STREAM_STDOUT, pb.OUTPUT_STREAM_STDERR
BATCHGATE = Path(sys.executable).with_name("batchgate")


def issue(service: RunningService, job: pb.JobSpec) -> int:
    return service.stub().IssueJob(pb.IssueJobRequest(spec=job)).job_id


def pod_of(cluster: EmulatedCluster, job_id: int) -> dict:
    (pod,) = [p for p in cluster.pods() if p["metadata"]["labels"].get("batchgate.io/job-id") == str(job_id)]
    return pod


def test_following_a_running_job_streams_its_log_until_it_ends(service: RunningService, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    command = f"echo first; echo oops >&2; while [ ! -e {gate} ]; do sleep 0.1; done; echo last"
    job_id = issue(service, spec(command, job_set="follow"))
    stream = service.stub().GetJobOutput(pb.GetJobOutputRequest(job_id=job_id, follow=True), timeout=120)
    received = b""
    while received.count(b"\n") < 2:  # both lines so far, stderr's too: the pod has one log
        received += next(stream).data
    assert sorted(received.splitlines()) == [b"first", b"oops"]
    assert job_id in service.stub().ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running
    gate.touch()
    received += b"".join(response.data for response in stream)  # ends by itself with the container
    assert received.endswith(b"last\n") and received.count(b"\n") == 3
    (update,) = collect_updates(service.stub(), 1, job_set="follow")
    assert update.exit_reason == pb.EXIT_REASON_FINISHED
    # Both streams are that one log, whole or followed after the end.
    assert job_output(service.stub(), job_id, STDERR) == received
    assert job_output(service.stub(), job_id, STDOUT, follow=True) == received


def waiting_for_image(cluster: EmulatedCluster, job_id: int) -> bool:
    pods = [p for p in cluster.pods() if p["metadata"]["labels"].get("batchgate.io/job-id") == str(job_id)]
    return bool(pods) and bool(pods[0]["status"].get("containerStatuses"))


def test_a_followed_job_whose_container_never_starts_says_so(service: RunningService, cluster: EmulatedCluster) -> None:
    options = pb.KubernetesOptions(image="registry.invalid/no-such-image:1")
    job_id = issue(service, spec("echo never", kubernetes=options, job_set="never"))
    wait_until(lambda: waiting_for_image(cluster, job_id), message="the pod to wait for its image")
    error = job_output_refused(service.stub(), job_id)  # not following: not yet, and why
    assert "has not started yet" in error.message and "ImagePull" in error.message and "ask again" in error.message, error.message
    # Following waits for the container, and ends when the job does without it (START_TIMEOUT).
    error = job_output_refused(service.stub(), job_id, follow=True)
    # (in the words of its pod, or, if the pod went with the Job already, that it is gone)
    assert "never started" in error.message or "never created" in error.message, error.message
    (update,) = collect_updates(service.stub(), 1, job_set="never")
    assert update.exit_reason == pb.EXIT_REASON_ERROR


def test_a_tail_in_bytes_of_a_long_log(service: RunningService) -> None:
    # 20,000 short lines, then one line longer than the first guess at a tail's lines allows.
    command = "i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done; head -c 6000 /dev/zero | tr '\\0' x; echo; echo end"
    job_id = issue(service, spec(command, job_set="tail"))
    (update,) = collect_updates(service.stub(), 1, job_set="tail")
    assert update.exit_reason == pb.EXIT_REASON_FINISHED
    whole = job_output(service.stub(), job_id)
    assert whole.startswith(b"line 0\nline 1\n") and whole.endswith(b"x" * 6000 + b"\nend\n")
    for tail in (1, 4, 100, 5000, 6006, 7000, 50_000, len(whole), len(whole) + 10):
        assert job_output(service.stub(), job_id, tail_bytes=tail) == whole[-tail:], tail
    assert job_output(service.stub(), job_id, tail_bytes=7000, follow=True) == whole[-7000:]


def test_a_failed_jobs_update_quotes_the_end_of_its_log(service: RunningService) -> None:
    noise = "".join(f"echo noise {number} >&2; " for number in range(40))
    # (stderr alone: the runtime reads stdout and stderr apart, so a line of each may swap places)
    job_id = issue(service, spec(f"{noise} echo 'no space left on /scratch' >&2; exit 3", job_set="quote"))
    (update,) = collect_updates(service.stub(), 1, job_set="quote")
    assert (update.job_id, update.exit_reason, update.exit_status) == (job_id, pb.EXIT_REASON_FAILED, 3)
    assert update.message.startswith("Job ") and "stderr ends:\n" in update.message, update.message
    assert update.message.endswith("noise 39\nno space left on /scratch"), update.message
    assert "noise 0\n" not in update.message and "noise 29\n" not in update.message  # the last lines only


def test_a_job_whose_pod_is_gone_has_no_output(service: RunningService, cluster: EmulatedCluster) -> None:
    job_id = issue(service, spec("echo kept", job_set="gone"))
    collect_updates(service.stub(), 1, job_set="gone")
    assert job_output(service.stub(), job_id) == b"kept\n"
    pod = pod_of(cluster, job_id)["metadata"]["name"]
    cluster.cluster.delete("pods", NAMESPACE, pod)  # as `kubectl delete pod`, or the Job's TTL
    wait_until(lambda: cluster.cluster.get("pods", NAMESPACE, pod) is None, message="the pod to go")
    for follow in (False, True):
        error = job_output_refused(service.stub(), job_id, follow=follow)
        assert "is gone" in error.message and "log went with it" in error.message, error.message


def test_a_stream_sent_to_a_file_of_its_own_is_read_from_there(service: RunningService, tmp_path: Path) -> None:
    # The tests' temporary directory is mounted in every container: a shared filesystem.
    target = tmp_path / "own.out"
    job_id = issue(service, spec("echo to the file; echo to the log >&2", stdout_path=str(target), job_set="file"))
    collect_updates(service.stub(), 1, job_set="file")
    assert job_output(service.stub(), job_id, STDOUT) == b"to the file\n"
    assert job_output(service.stub(), job_id, STDERR) == b"to the log\n"
    target.unlink()
    error = job_output_refused(service.stub(), job_id)
    assert str(target) in error.message and "does not exist" in error.message


# ---- the command line ---------------------------------------------------------------------------


def batchgate(address: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BATCHGATE), "--address", address, *argv], capture_output=True, text=True, timeout=120)


def test_the_cli_prints_a_k8s_jobs_log_once(service: RunningService, tmp_path: Path) -> None:
    failed = batchgate(service.address, "submit", "--wait", "--", "echo hello; echo careful >&2; exit 3")
    assert failed.returncode == 3, failed.stderr
    # The pod's one log, printed once (on stdout), not once for each stream.
    assert sorted(failed.stdout.splitlines()) == ["careful", "hello"], failed.stdout
    assert "careful" not in failed.stderr and "FAILED with exit status 3" in failed.stderr, failed.stderr
    job_id = failed.stderr.split("batchgate: job ")[1].split()[0]
    assert batchgate(service.address, "logs", job_id).stdout == failed.stdout
    assert batchgate(service.address, "logs", "--stderr", "--tail", "8", job_id).stdout == failed.stdout[-8:]
    # Behind a gateway, by the backend the job goes to: k8s prints one log, local two streams.
    local = start_service("local", tmp_path / "local", "--cores", "2", "--memory", "2G")
    gateway = start_service("gateway", tmp_path / "gateway", "--backends", f"local={local.address},k8s={service.address}")
    try:
        on_k8s = batchgate(gateway.address, "submit", "--wait", "--backend", "k8s", "--", "echo hello; echo careful >&2")
        assert on_k8s.returncode == 0 and sorted(on_k8s.stdout.splitlines()) == ["careful", "hello"], on_k8s
        assert "careful" not in on_k8s.stderr
        on_local = batchgate(gateway.address, "submit", "--wait", "--", "echo hello; echo careful >&2")
        assert (on_local.returncode, on_local.stdout) == (0, "hello\n") and "careful\n" in on_local.stderr, on_local
    finally:
        gateway.kill()
        local.kill()


# ---- the emulated API server answers as the real one -------------------------------------------


def test_the_emulated_log_endpoint_answers_as_kubernetes(service: RunningService, cluster: EmulatedCluster) -> None:
    job_id = issue(service, spec("printf 'a\\nb\\nc'", job_set="endpoint"))
    collect_updates(service.stub(), 1, job_set="endpoint")
    configuration = client.Configuration()
    config.load_kube_config(str(cluster.kubeconfig), client_configuration=configuration)
    core = client.CoreV1Api(client.ApiClient(configuration))
    pod = pod_of(cluster, job_id)["metadata"]["name"]

    def log(name: str = pod, **options: object) -> bytes:
        # Unparsed, as the driver reads it (client 36 turns a preloaded text answer into "b'...'").
        return core.read_namespaced_pod_log(name, NAMESPACE, _preload_content=False, **options).data

    assert log() == b"a\nb\nc"
    assert log(container="job", tail_lines=2) == b"b\nc"
    assert log(tail_lines=0) == b""
    assert log(limit_bytes=3) == b"a\nb"
    assert log(tail_lines=2, limit_bytes=1) == b"b"
    for call, code, reason, said in [
        (lambda: log("no-such-pod"), 404, "NotFound", 'pods "no-such-pod" not found'),
        (lambda: log(container="other"), 400, "BadRequest", f"container other is not valid for pod {pod}"),
        (lambda: log(limit_bytes=0), 422, "Invalid", "limitBytes: Invalid value: 0"),
    ]:
        with pytest.raises(ApiException) as caught:
            call()
        answer = json.loads(caught.value.body)
        assert (caught.value.status, answer["kind"], answer["code"], answer["reason"]) == (code, "Status", code, reason) and said in answer["message"], answer
    # A container that has not started: the kubelet's words, as a 400 Status.
    options = pb.KubernetesOptions(image="registry.invalid/still-missing:1")
    waiting = issue(service, spec("true", kubernetes=options, job_set="endpoint-waiting"))
    wait_until(lambda: waiting_for_image(cluster, waiting), message="the pod to wait for its image")
    with pytest.raises(ApiException) as caught:
        log(pod_of(cluster, waiting)["metadata"]["name"])
    answer = json.loads(caught.value.body)
    assert (caught.value.status, answer["reason"]) == (400, "BadRequest"), answer
    assert answer["message"].endswith(("is waiting to start: image can't be pulled", "is waiting to start: trying and failing to pull image")), answer
    collect_updates(service.stub(), 1, job_set="endpoint-waiting")


def test_a_client_that_stops_following_closes_the_pod_log(service: RunningService, cluster: EmulatedCluster, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    job_id = issue(service, spec(f"echo up; while [ ! -e {gate} ]; do sleep 0.1; done", job_set="leave"))
    stream = service.stub().GetJobOutput(pb.GetJobOutputRequest(job_id=job_id, follow=True), timeout=120)
    assert next(stream).data == b"up\n"
    assert cluster.server.log_streams  # the service follows the pod's log
    stream.cancel()
    # The service closes its read of the log while the job still runs.
    wait_until(lambda: not cluster.server.log_streams, message="the service to close the pod's log")
    assert job_id in service.stub().ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running
    gate.touch()
    (update,) = collect_updates(service.stub(), 1, job_set="leave")
    assert update.exit_reason == pb.EXIT_REASON_FINISHED
