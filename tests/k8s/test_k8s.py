"""The Kubernetes backend against the emulated API server, through the official client only:
what a job's end is reported as, start problems, scheduling, kills, watches that expire or drop,
a crash with jobs in flight, the manifest sent, and capacity from the node list."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import RunningService, collect_updates, spec, start_service, updates_within, wait_until
from k8s_cluster import IMAGE, NAMESPACE, EmulatedCluster, start_k8s_service
from k8s_apiserver import kubeconfig
from k8s_controller import RUNTIME_LABEL

from batchgate.errors import InvalidArgument, from_rpc_error
from batchgate.services.k8s.manifest import DNS_LABEL, job_name
from batchgate.store import Store
from batchgate.v1 import batchgate_pb2 as pb

MIB = 1024**2
SELECTOR_JOB_ID = "batchgate.io/job-id"


def issue(service: RunningService, *specs: pb.JobSpec) -> list[int]:
    return list(service.stub().IssueJobs(pb.IssueJobsRequest(specs=specs)).job_ids)


def instance_of(service: RunningService) -> str:
    store = Store(service.state_dir / f"{service.name}.sqlite")
    try:
        return store.instance_id()
    finally:
        store.close()


def jobs_of(cluster: EmulatedCluster, service: RunningService, job_id: int) -> list[dict]:
    """The Jobs of one service's job (several services share the cluster, and job ids)."""
    return cluster.jobs(f"batchgate.io/instance={instance_of(service)},{SELECTOR_JOB_ID}={job_id}")


def pods_of(cluster: EmulatedCluster, name: str) -> list[dict]:
    return [p for p in cluster.pods() if p["metadata"]["labels"].get("batch.kubernetes.io/job-name") == name]


def running(service: RunningService, job_id: int) -> bool:
    return job_id in service.stub().ListRunningJobs(pb.ListRunningJobsRequest()).seconds_running


def containers(cluster: EmulatedCluster, pod: dict) -> list[str]:
    """The pod's containers on the Docker engine, running or not."""
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={RUNTIME_LABEL}={cluster.controller.token}", "--filter", f"name=bgk8s-{pod['metadata']['uid']}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


# ---- how jobs end -----------------------------------------------------------------------------


def test_exit_codes_memory_and_wall_time_are_reported_from_the_pod(service: RunningService) -> None:
    hog = 'x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo ${#x}'
    ok, failed, oom, late = issue(
        service,
        spec("sleep 1.2", job_set="ends"),
        spec("exit 42", job_set="ends"),
        spec(hog, memory=32 * MIB, job_set="ends"),
        spec("sleep 60", wall_time_seconds=1, job_set="ends"),
    )
    updates = {u.job_id: u for u in collect_updates(service.stub(), 4, job_set="ends")}
    assert (updates[ok].exit_reason, updates[ok].exit_status) == (pb.EXIT_REASON_FINISHED, 0)
    assert updates[ok].wall_time_seconds >= 1  # from the container's startedAt/finishedAt
    assert (updates[failed].exit_reason, updates[failed].exit_status) == (pb.EXIT_REASON_FAILED, 42)
    assert updates[oom].exit_reason == pb.EXIT_REASON_MEMLIMIT and "OOMKilled" in updates[oom].message
    assert updates[late].exit_reason == pb.EXIT_REASON_TIMELIMIT and "activeDeadlineSeconds" in updates[late].message
    assert all(updates[job].backing_id for job in (ok, failed, oom, late))


def test_an_image_that_cannot_be_pulled_is_error_with_the_reason(service: RunningService, cluster: EmulatedCluster) -> None:
    options = pb.KubernetesOptions(image="registry.invalid/no-such-image:1")
    (job,) = issue(service, spec("true", kubernetes=options, job_set="pull"))
    (update,) = collect_updates(service.stub(), 1, job_set="pull")
    assert (update.exit_reason, update.exit_status) == (pb.EXIT_REASON_ERROR, 255)
    assert "registry.invalid/no-such-image:1" in update.message and "ImagePull" in update.message
    wait_until(lambda: not jobs_of(cluster, service, job), 10, message="the Job that could not start to be deleted")


def test_an_evicted_pod_is_lost_and_a_job_deleted_by_someone_else_is_killed(service: RunningService, cluster: EmulatedCluster) -> None:
    evicted, deleted = issue(service, spec("sleep 300", job_set="taken"), spec("sleep 300", job_set="taken"))
    wait_until(lambda: running(service, evicted) and running(service, deleted), 30, message="both running")
    (evicted_job,) = jobs_of(cluster, service, evicted)
    (pod,) = pods_of(cluster, evicted_job["metadata"]["name"])
    cluster.controller.evict(pod["metadata"]["name"])
    (deleted_job,) = jobs_of(cluster, service, deleted)
    cluster.cluster.delete("jobs", NAMESPACE, deleted_job["metadata"]["name"], "Foreground")

    updates = {u.job_id: u for u in collect_updates(service.stub(), 2, job_set="taken")}
    assert updates[evicted].exit_reason == pb.EXIT_REASON_LOST and "Evicted" in updates[evicted].message
    assert updates[deleted].exit_reason == pb.EXIT_REASON_KILLED and "deleted" in updates[deleted].message


# ---- scheduling and kills ---------------------------------------------------------------------


def test_an_unschedulable_job_is_explained_and_killing_it_leaves_nothing(service: RunningService, cluster: EmulatedCluster) -> None:
    stub = service.stub()
    options = pb.KubernetesOptions(node_selector={"disktype": "ssd"})
    (stuck,) = issue(service, spec("true", kubernetes=options, job_set="stuck"))

    def explained() -> str:
        return stub.GetSchedulingStatus(pb.GetSchedulingStatusRequest(job_set="stuck")).message

    wait_until(lambda: "didn't match Pod's node affinity/selector" in explained(), 30, message="the scheduler's reason")
    assert f"job {stuck}" in explained() and "0/2 nodes are available" in explained()

    stub.KillJobs(pb.KillJobsRequest(job_ids=[stuck]))
    assert not jobs_of(cluster, service, stuck)  # KillJobs returned once the Job (and its pod) were gone
    assert not updates_within(stub, 1.5, job_set="stuck")


def test_kill_of_a_running_job_returns_once_its_pod_and_container_are_gone(service: RunningService, cluster: EmulatedCluster) -> None:
    stub = service.stub()
    (sleeper,) = issue(service, spec("sleep 300", job_set="kill"))
    wait_until(lambda: running(service, sleeper), 30, message="the job to run")
    (job,) = jobs_of(cluster, service, sleeper)
    name = job["metadata"]["name"]
    (pod,) = pods_of(cluster, name)
    assert containers(cluster, pod)

    stub.KillJobs(pb.KillJobsRequest(job_ids=[sleeper]))

    assert not jobs_of(cluster, service, sleeper) and not pods_of(cluster, name)
    assert not containers(cluster, pod)
    assert not updates_within(stub, 1.5, job_set="kill")


# ---- watches ----------------------------------------------------------------------------------


def test_an_expired_watch_relists_and_a_dropped_one_resumes_losing_no_update(service: RunningService, cluster: EmulatedCluster) -> None:
    stub = service.stub()
    first = issue(service, *[spec("sleep 1", job_set="watch") for _ in range(3)])
    wait_until(lambda: all(jobs_of(cluster, service, job) for job in first), 30, message="the Jobs to exist")
    requests = cluster.cluster.requests
    lists_before = requests.get("GET jobs", 0)
    watches_before = {kind: requests.get(f"WATCH {kind}", 0) for kind in ("jobs", "pods")}
    cluster.cluster.compact()  # every watch's version is now too old: 410 Gone
    cluster.server.drop_watches()
    wait_until(lambda: requests.get("GET jobs", 0) > lists_before, 30, message="the service to list again")

    second = issue(service, *[spec("sleep 1", job_set="watch") for _ in range(3)])
    wait_until(lambda: all(jobs_of(cluster, service, job) for job in second), 30, message="the Jobs to exist")
    wait_until(lambda: all(requests.get(f"WATCH {k}", 0) > n for k, n in watches_before.items()), 30, message="both watches to reopen")
    lists_before = cluster.cluster.requests.get("GET jobs", 0)
    watches_before = cluster.cluster.requests.get("WATCH jobs", 0)
    assert cluster.server.drop_watches() >= 2  # the connections drop; the history is still there
    wait_until(lambda: cluster.cluster.requests.get("WATCH jobs", 0) > watches_before, 30, message="the watch to resume")

    updates = collect_updates(stub, 6, job_set="watch")
    assert sorted(u.job_id for u in updates) == sorted(first + second)
    assert all(u.exit_reason == pb.EXIT_REASON_FINISHED for u in updates)
    assert not updates_within(stub, 1.5, after=max(u.sequence for u in updates), job_set="watch")
    assert cluster.cluster.requests.get("GET jobs", 0) == lists_before  # resumed from its version, no relist


# ---- crashes and lost answers -----------------------------------------------------------------


def test_a_crash_with_jobs_in_flight_readopts_every_job_and_reports_each_once(cluster: EmulatedCluster, tmp_path: Path) -> None:
    service = start_k8s_service(tmp_path / "k8s", cluster.kubeconfig)
    try:
        ids = issue(service, *[spec("sleep 2") for _ in range(5)], spec("exit 3"), spec("sleep 300"))
        wait_until(lambda: all(jobs_of(cluster, service, job) for job in ids), 30, message="every Job to exist")
        service.kill()
        (vanishing,) = jobs_of(cluster, service, ids[-1])  # gone while no service watches (e.g. its TTL)
        cluster.cluster.remove("jobs", NAMESPACE, vanishing["metadata"]["name"])
        service = service.restart()

        updates = collect_updates(service.stub(), 7)
        assert sorted(u.job_id for u in updates) == sorted(ids)
        assert not updates_within(service.stub(), 1.5, after=max(u.sequence for u in updates))
        ours = cluster.jobs(f"batchgate.io/instance={instance_of(service)}")
        assert sorted(int(job["metadata"]["labels"][SELECTOR_JOB_ID]) for job in ours) == sorted(ids[:-1])  # none twice
        by_id = {u.job_id: u for u in updates}
        assert all(by_id[job].exit_reason == pb.EXIT_REASON_FINISHED for job in ids[:5]) and by_id[ids[5]].exit_status == 3
        assert by_id[ids[-1]].exit_reason == pb.EXIT_REASON_MISSING and "no longer in the cluster" in by_id[ids[-1]].message
    finally:
        service.kill()


def test_a_create_whose_answer_was_lost_is_found_by_its_labels_not_made_twice(cluster: EmulatedCluster, tmp_path: Path) -> None:
    service = start_k8s_service(tmp_path / "k8s", cluster.kubeconfig)
    try:
        creates_before = cluster.cluster.requests.get("POST jobs", 0)
        cluster.server.lose_create_answers = 1
        (job,) = issue(service, spec("echo made once"))
        (update,) = collect_updates(service.stub(), 1)
        assert update.job_id == job and update.exit_reason == pb.EXIT_REASON_FINISHED
        assert cluster.cluster.requests["POST jobs"] - creates_before == 2  # the create was sent again...
        assert len(jobs_of(cluster, service, job)) == 1  # ...and met the Job it had made
    finally:
        service.kill()


def test_an_api_server_out_of_reach_fails_the_job_saying_so_instead_of_hanging(tmp_path: Path) -> None:
    with socket.socket() as placeholder:  # a port nothing listens on
        placeholder.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{placeholder.getsockname()[1]}"
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig(url))
    service = start_k8s_service(tmp_path / "k8s", config, "--k8s-api-timeout", "2")
    try:
        (job,) = issue(service, spec("true"))
        (update,) = collect_updates(service.stub(), 1)
        assert (update.job_id, update.exit_reason, update.exit_status) == (job, pb.EXIT_REASON_ERROR, 255)
        assert url in update.message and "did not answer" in update.message
        assert api_health(service) == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        service.kill()


# ---- the manifest -----------------------------------------------------------------------------


def test_the_job_manifest_carries_every_option_field_by_field(service: RunningService, cluster: EmulatedCluster, tmp_path: Path) -> None:
    options = pb.KubernetesOptions(
        image=IMAGE,
        namespace=NAMESPACE,
        service_account="runner",
        node_selector={"disktype": "hdd"},
        labels={"team": "genomics"},
        annotations={"example.com/owner": "ada"},
        tolerations=[pb.KubernetesToleration(key="dedicated", operator="Equal", value="batch", effect="NoSchedule", toleration_seconds=60)],
        scratch_volume_size=5 * 1024**3,
        scratch_storage_class="fast-ssd",
        scratch_mount_path="/work",
    )
    job_spec = spec(
        "echo $GREETING",
        name="Align Reads #7",
        cores=1.5,
        memory=256 * MIB,
        disk=2 * 1024**3,
        accelerators=[pb.Accelerator(count=1, kind="gpu", model="tesla-t4")],
        preemptible=True,
        wall_time_seconds=90.5,
        environment={"GREETING": "hi there"},
        working_directory=str(tmp_path),
        stdout_path=str(tmp_path / "out"),
        stderr_path=str(tmp_path / "err"),
        request_key="req-1",
        job_set="manifest",
        kubernetes=options,
    )
    (job_id,) = issue(service, job_spec)
    wait_until(lambda: jobs_of(cluster, service, job_id), 30, message="the Job")
    (job,) = jobs_of(cluster, service, job_id)
    metadata, job_spec_k8s = job["metadata"], job["spec"]
    instance = instance_of(service)

    assert metadata["name"] == f"align-reads-7-{instance}-{job_id}" and metadata["namespace"] == NAMESPACE
    labels = metadata["labels"]
    assert labels["team"] == "genomics" and labels["batchgate.io/instance"] == instance and labels[SELECTOR_JOB_ID] == str(job_id)
    assert labels["app.kubernetes.io/managed-by"] == "batchgate" and len(labels["batchgate.io/request-key"]) == 40
    assert metadata["annotations"]["example.com/owner"] == "ada" and metadata["annotations"]["batchgate.io/request-key"] == "req-1"
    assert metadata["annotations"]["batchgate.io/job-name"] == "Align Reads #7"
    assert job_spec_k8s["backoffLimit"] == 0 and job_spec_k8s["activeDeadlineSeconds"] == 91
    assert job_spec_k8s["ttlSecondsAfterFinished"] == 3600
    template = job_spec_k8s["template"]
    assert template["metadata"]["labels"]["batchgate.io/instance"] == instance  # pods carry the labels too
    pod = template["spec"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "runner" and pod["terminationGracePeriodSeconds"] == 1
    assert pod["nodeSelector"] == {"disktype": "hdd", "nvidia.com/gpu.product": "tesla-t4"}
    assert {"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule", "tolerationSeconds": 60} in pod["tolerations"]
    assert {"key": "cloud.google.com/gke-preemptible", "operator": "Equal", "value": "true"} in pod["tolerations"]
    preferred = pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert {"key": "eks.amazonaws.com/capacityType", "operator": "In", "values": ["SPOT"]} in [p["preference"]["matchExpressions"][0] for p in preferred]
    (volume,) = pod["volumes"]
    claim = volume["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == str(5 * 1024**3) and claim["storageClassName"] == "fast-ssd"
    (container,) = pod["containers"]
    assert container["image"] == IMAGE and container["workingDir"] == str(tmp_path)
    assert container["command"][:2] == ["/bin/sh", "-c"] and container["command"][3:] == ["echo $GREETING", str(tmp_path / "out"), str(tmp_path / "err")]
    assert container["env"] == [{"name": "GREETING", "value": "hi there"}]
    expected = {"cpu": "1500m", "memory": str(256 * MIB), "ephemeral-storage": str(2 * 1024**3), "nvidia.com/gpu": "1"}
    assert container["resources"] == {"requests": expected, "limits": expected}
    assert container["volumeMounts"] == [{"name": "scratch", "mountPath": "/work"}]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    service.stub().KillJobs(pb.KillJobsRequest(job_ids=[job_id]))


def test_a_plain_job_runs_as_a_non_root_user_away_from_spot_nodes(cluster: EmulatedCluster, tmp_path: Path) -> None:
    service = start_service("k8s", tmp_path / "k8s", "--k8s-kubeconfig", str(cluster.kubeconfig), "--k8s-image", IMAGE)
    try:
        (job_id,) = issue(service, spec("id -u"))
        (update,) = collect_updates(service.stub(), 1)
        assert update.exit_reason == pb.EXIT_REASON_FINISHED
        (job,) = jobs_of(cluster, service, job_id)
        pod = job["spec"]["template"]["spec"]
        assert pod["containers"][0]["securityContext"]["runAsUser"] == 1000
        assert pod["containers"][0]["securityContext"]["runAsNonRoot"] is True
        required = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
        assert {"key": "eks.amazonaws.com/capacityType", "operator": "NotIn", "values": ["SPOT"]} in required["matchExpressions"]
        (ran,) = pods_of(cluster, job["metadata"]["name"])
        assert ran["spec"]["nodeName"] == "node-1"
    finally:
        service.kill()


def test_a_preemptible_job_may_run_on_a_tainted_spot_node_and_others_may_not(service: RunningService, cluster: EmulatedCluster) -> None:
    stub = service.stub()
    gpu = [pb.Accelerator(count=1, kind="gpu", model="tesla-t4")]  # only the spot node has GPUs
    spot, steady = issue(
        service, spec("true", accelerators=gpu, preemptible=True, job_set="spot"), spec("true", accelerators=gpu, job_set="spot")
    )
    (update,) = collect_updates(stub, 1, job_set="spot")
    assert (update.job_id, update.exit_reason) == (spot, pb.EXIT_REASON_FINISHED)
    (ran,) = pods_of(cluster, jobs_of(cluster, service, spot)[0]["metadata"]["name"])
    assert ran["spec"]["nodeName"] == "spot-gpu-1"
    wait_until(lambda: f"job {steady}" in stub.GetSchedulingStatus(pb.GetSchedulingStatusRequest(job_set="spot")).message, 30)
    stub.KillJobs(pb.KillJobsRequest(job_ids=[steady]))


# ---- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, field",
    [
        (pb.KubernetesOptions(namespace="elsewhere"), "spec.kubernetes.namespace"),
        (pb.KubernetesOptions(labels={"batchgate.io/job-id": "1"}), "spec.kubernetes.labels['batchgate.io/job-id']"),
        (pb.KubernetesOptions(labels={"team": "has spaces"}), "spec.kubernetes.labels['team']"),
        (pb.KubernetesOptions(node_selector={"bad key!": "x"}), "spec.kubernetes.node_selector['bad key!']"),
        (pb.KubernetesOptions(tolerations=[pb.KubernetesToleration(key="a", operator="Maybe")]), "spec.kubernetes.tolerations[0].operator"),
        (pb.KubernetesOptions(scratch_volume_size=-1), "spec.kubernetes.scratch_volume_size"),
        (pb.KubernetesOptions(scratch_mount_path="relative"), "spec.kubernetes.scratch_mount_path"),
    ],
)
def test_bad_kubernetes_options_are_refused_naming_the_field(service: RunningService, options: pb.KubernetesOptions, field: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        service.stub().IssueJob(pb.IssueJobRequest(spec=spec("true", kubernetes=options)))
    error = from_rpc_error(caught.value)
    assert isinstance(error, InvalidArgument) and error.field == field


def test_a_service_without_an_image_refuses_jobs_that_name_none(cluster: EmulatedCluster, tmp_path: Path) -> None:
    service = start_service("k8s", tmp_path / "k8s", "--k8s-kubeconfig", str(cluster.kubeconfig))
    try:
        with pytest.raises(grpc.RpcError) as caught:
            service.stub().IssueJob(pb.IssueJobRequest(spec=spec("true")))
        error = from_rpc_error(caught.value)
        assert isinstance(error, InvalidArgument) and error.field == "spec.kubernetes.image"
    finally:
        service.kill()


# ---- capacity ---------------------------------------------------------------------------------


def api_health(service: RunningService) -> int:
    check = health_pb2_grpc.HealthStub(service.channel()).Check
    return check(health_pb2.HealthCheckRequest(service="kubernetes-api")).status


def test_capabilities_nodes_and_node_types_come_from_the_node_list(service: RunningService) -> None:
    stub = service.stub()
    assert api_health(service) == health_pb2.HealthCheckResponse.SERVING
    capabilities = stub.GetCapabilities(pb.GetCapabilitiesRequest())
    assert capabilities.max_cores == 8 and capabilities.max_memory == 16 * 1024**3
    assert [(a.accelerator.kind, a.accelerator.model, a.accelerator.count) for a in capabilities.accelerators] == [("gpu", "tesla-t4", 2)]
    nodes = {n.name: n for n in stub.GetNodes(pb.GetNodesRequest()).nodes}
    assert set(nodes) == {"node-1", "spot-gpu-1"}
    assert nodes["spot-gpu-1"].preemptible and not nodes["node-1"].preemptible
    assert nodes["node-1"].cores == 4 and nodes["node-1"].state == "Ready"
    types = stub.GetNodeTypes(pb.GetNodeTypesRequest()).node_types
    assert sorted((t.cores, t.preemptible, t.count) for t in types) == [(4, False, 1), (8, True, 1)]
    # A request bigger than any node is refused at issue.
    with pytest.raises(grpc.RpcError) as caught:
        stub.IssueJob(pb.IssueJobRequest(spec=spec("true", accelerators=[pb.Accelerator(count=3, kind="gpu")])))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# ---- behind a gateway -------------------------------------------------------------------------


def test_a_gateway_sends_jobs_to_local_and_k8s_and_merges_their_updates(service: RunningService, tmp_path: Path) -> None:
    local = start_service("local", tmp_path / "local", "--cores", "2", "--memory", "2G")
    gateway = start_service("gateway", tmp_path / "gateway", "--backends", f"local={local.address},k8s={service.address}")
    try:
        stub = gateway.stub()
        to_local, to_k8s, routed = stub.IssueJobs(
            pb.IssueJobsRequest(
                specs=[
                    spec("exit 4", backend="local", job_set="gw"),
                    spec("exit 5", backend="k8s", job_set="gw"),
                    spec("exit 6", kubernetes=pb.KubernetesOptions(labels={"via": "gateway"}), job_set="gw"),
                ]
            )
        ).job_ids
        updates = {u.job_id: u for u in collect_updates(stub, 3, job_set="gw")}
        assert (updates[to_local].backend, updates[to_local].exit_status) == ("local", 4)
        assert (updates[to_k8s].backend, updates[to_k8s].exit_status) == ("k8s", 5)
        assert (updates[routed].backend, updates[routed].exit_status) == ("k8s", 6)  # only k8s takes kubernetes options
    finally:
        gateway.kill()
        local.kill()


def test_job_names_are_dns_labels_and_stable() -> None:
    long = job_name(123456789, "0123456789ab", "Ünïcode & a very long name " * 5)
    assert len(long) <= 63 and DNS_LABEL.fullmatch(long) and long.endswith("-0123456789ab-123456789")
    assert job_name(7, "0123456789ab", "") == "batchgate-0123456789ab-7" == job_name(7, "0123456789ab")
    assert job_name(1, "abc", "---") == "batchgate-abc-1"  # a name of nothing usable still makes one


def test_a_service_without_credentials_stops_saying_so(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no Kubernetes credentials"):
        start_service("k8s", tmp_path / "k8s", "--k8s-kubeconfig", str(tmp_path / "missing-kubeconfig"))
