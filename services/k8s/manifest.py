"""A batchgate job as a batch/v1 Job manifest (a plain dict, as the API takes it).

Everything the service decides about a Job is here and nowhere else, so it can be read (and is
tested) field by field: names, labels, resources, placement, security, volumes, the command.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

from batchgate.driver import Job
from batchgate.errors import InvalidArgument
from batchgate.v1 import batchgate_pb2 as pb

Manifest = dict[str, Any]

LABEL_PREFIX = "batchgate.io/"
LABEL_INSTANCE = LABEL_PREFIX + "instance"  # the service's store: a restarted service finds its own Jobs
LABEL_JOB_ID = LABEL_PREFIX + "job-id"
LABEL_REQUEST_KEY = LABEL_PREFIX + "request-key"  # a hash: a label value cannot hold any string
ANNOTATION_REQUEST_KEY = LABEL_PREFIX + "request-key"
ANNOTATION_JOB_NAME = LABEL_PREFIX + "job-name"
CONTAINER_NAME = "job"
DEFAULT_SCRATCH_PATH = "/scratch"

# Nodes that can be taken away, as Toil's Kubernetes batch system knows them (EKS labels them,
# GKE labels and taints them), plus GKE's and Karpenter's spot labels.
SPOT_LABELS: tuple[tuple[str, str], ...] = (
    ("eks.amazonaws.com/capacityType", "SPOT"),
    ("cloud.google.com/gke-preemptible", "true"),
    ("cloud.google.com/gke-spot", "true"),
    ("karpenter.sh/capacity-type", "spot"),
)
SPOT_TAINTS: tuple[tuple[str, str], ...] = (("cloud.google.com/gke-preemptible", "true"), ("cloud.google.com/gke-spot", "true"))

# The container's first process is PID 1, which the kernel spares the signals it has no handler
# for (a job's `kill -9 $$` would do nothing) and which would ignore the kubelet's SIGTERM until
# the grace period ends. So a small /bin/sh runs the command as its child, passes SIGTERM on, and
# exits with the child's status (128+N for a death by signal N, as shells report it).
# $0 is the command; $1 and $2 the stdout and stderr paths (empty: the pod's log).
WRAPPER = """\
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
if [ -n "$1" ]; then exec >"$1"; fi
if [ -n "$2" ]; then exec 2>"$2"; fi
/bin/sh -c "$0" </dev/null & child=$!
wait "$child"; status=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done
exit "$status"
"""

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
TOLERATION_OPERATORS = ("", "Equal", "Exists")
TAINT_EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")


@dataclass(frozen=True)
class Settings:
    """What the service adds to every job (a job's KubernetesOptions override or add to it)."""

    namespace: str = "default"
    image: str = ""
    service_account: str = ""
    run_as_user: int = 1000
    ttl_after_finished: int = 3600  # seconds a finished Job stays for a restarted service to read
    kill_grace: int = 10  # terminationGracePeriodSeconds
    gpu_model_label: str = "nvidia.com/gpu.product"
    scratch_volume_size: int = 0
    scratch_storage_class: str = ""


def job_name(job_id: int, instance_id: str, name: str = "") -> str:
    """A DNS-1123 label (at most 63 characters, so pods named after it stay valid) that is the
    same every time for this service's job: a create that is retried can never make two Jobs."""
    suffix = f"-{instance_id[:12]}-{job_id}"
    readable = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    prefix = (readable or "batchgate")[: 63 - len(suffix)].rstrip("-") or "batchgate"
    return prefix + suffix


def request_key_label(request_key: str) -> str:
    return hashlib.sha256(request_key.encode()).hexdigest()[:40]


def options_of(job: Job) -> pb.KubernetesOptions:
    return job.options if isinstance(job.options, pb.KubernetesOptions) else pb.KubernetesOptions()


def _check_label_key(key: str, where: str) -> None:
    prefix, _, name = key.rpartition("/")
    if not LABEL_NAME.fullmatch(name) or len(name) > 63 or (prefix and (not DNS_SUBDOMAIN.fullmatch(prefix) or len(prefix) > 253)):
        raise InvalidArgument(where, "not a Kubernetes label key: [prefix/]name, the name at most 63 letters, digits, '-', '_', '.'")
    if key.startswith(LABEL_PREFIX):
        raise InvalidArgument(where, f"keys under {LABEL_PREFIX} are batchgate's own")


def _check_label_value(value: str, where: str) -> None:
    if len(value) > 63 or not LABEL_VALUE.fullmatch(value):
        raise InvalidArgument(where, "not a Kubernetes label value: at most 63 letters, digits, '-', '_', '.', alphanumeric at both ends")


def validate(job: Job, settings: Settings) -> None:
    """Refuse what the API server would refuse, naming the field; raises InvalidArgument."""
    options = options_of(job)
    if not (options.image or settings.image):
        raise InvalidArgument("kubernetes.image", "no image: name one here, or start the service with --k8s-image")
    if options.namespace and options.namespace != settings.namespace:
        raise InvalidArgument(
            "kubernetes.namespace", f"this service runs and watches jobs in namespace {settings.namespace!r}; run one service per namespace"
        )
    if options.service_account and (not DNS_SUBDOMAIN.fullmatch(options.service_account) or len(options.service_account) > 253):
        raise InvalidArgument("kubernetes.service_account", "not a Kubernetes name (lower-case letters, digits, '-', '.')")
    for name in job.environment:
        if not ENV_NAME.fullmatch(name):
            raise InvalidArgument(f"environment[{name!r}]", "Kubernetes takes variable names of letters, digits, '_', '-' and '.', not starting with a digit")
    for kind, mapping in (("labels", options.labels), ("node_selector", options.node_selector)):
        for key, value in mapping.items():
            _check_label_key(key, f"kubernetes.{kind}[{key!r}]")
            _check_label_value(value, f"kubernetes.{kind}[{key!r}]")
    for key in options.annotations:
        _check_label_key(key, f"kubernetes.annotations[{key!r}]")
    for index, toleration in enumerate(options.tolerations):
        if toleration.operator not in TOLERATION_OPERATORS:
            raise InvalidArgument(f"kubernetes.tolerations[{index}].operator", "must be Equal or Exists")
        if toleration.effect not in TAINT_EFFECTS:
            raise InvalidArgument(f"kubernetes.tolerations[{index}].effect", "must be NoSchedule, PreferNoSchedule or NoExecute")
        if toleration.operator == "Exists" and toleration.value:
            raise InvalidArgument(f"kubernetes.tolerations[{index}].value", "must be empty when the operator is Exists")
    if options.scratch_volume_size < 0:
        raise InvalidArgument("kubernetes.scratch_volume_size", "must not be negative")
    if options.scratch_storage_class and not DNS_SUBDOMAIN.fullmatch(options.scratch_storage_class):
        raise InvalidArgument("kubernetes.scratch_storage_class", "not a Kubernetes name")
    if options.scratch_mount_path and not options.scratch_mount_path.startswith("/"):
        raise InvalidArgument("kubernetes.scratch_mount_path", "must be an absolute path")


def quantities(job: Job, gpu_resource: str) -> dict[str, str]:
    """Requests = limits: what the job asked for is what it gets, and what it may not pass."""
    amounts = {"cpu": f"{max(1, math.ceil(job.cores * 1000))}m"}
    if job.memory > 0:
        amounts["memory"] = str(job.memory)
    if job.disk > 0:
        amounts["ephemeral-storage"] = str(job.disk)
    gpus = sum(a.count for a in job.accelerators if a.kind == "gpu")
    if gpus:
        amounts[gpu_resource] = str(gpus)
    return amounts


def toleration(item: pb.KubernetesToleration) -> dict[str, Any]:
    made: dict[str, Any] = {"key": item.key, "operator": item.operator or "Equal"}
    if item.value:
        made["value"] = item.value
    if item.effect:
        made["effect"] = item.effect
    if item.HasField("toleration_seconds"):
        made["tolerationSeconds"] = item.toleration_seconds
    return made


def placement(job: Job, settings: Settings, options: pb.KubernetesOptions) -> dict[str, Any]:
    """Node selector, tolerations and affinity: where the job may and would rather run."""
    selector = dict(options.node_selector)
    models = {a.model for a in job.accelerators if a.kind == "gpu" and a.model}
    if models:
        selector[settings.gpu_model_label] = next(iter(models))  # the kit allows one model per job
    tolerations = [toleration(t) for t in options.tolerations]
    spot_terms = [{"key": key, "operator": "In", "values": [value]} for key, value in SPOT_LABELS]
    if job.preemptible:
        # Rather on spot nodes, which may be taken away, and allowed past their taints.
        tolerations += [{"key": key, "operator": "Equal", "value": value} for key, value in SPOT_TAINTS]
        affinity = {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "preference": {"matchExpressions": [term]}} for term in spot_terms
            ]
        }
    else:
        # Never on them: each spot label must be absent or say otherwise.
        not_spot = [{**term, "operator": "NotIn"} for term in spot_terms]
        affinity = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": not_spot}]}}
    made: dict[str, Any] = {"affinity": {"nodeAffinity": affinity}}
    if selector:
        made["nodeSelector"] = selector
    if tolerations:
        made["tolerations"] = tolerations
    return made


def job_manifest(job: Job, *, instance_id: str, service: str, settings: Settings) -> Manifest:
    options = options_of(job)
    name = job_name(job.job_id, instance_id, job.name)
    labels = {**options.labels, "app.kubernetes.io/managed-by": "batchgate", LABEL_INSTANCE: instance_id, LABEL_JOB_ID: str(job.job_id)}
    annotations = {**options.annotations, LABEL_PREFIX + "service": service}
    if job.request_key:
        labels[LABEL_REQUEST_KEY] = request_key_label(job.request_key)
        annotations[ANNOTATION_REQUEST_KEY] = job.request_key
    if job.name:
        annotations[ANNOTATION_JOB_NAME] = job.name
    brands = {a.brand for a in job.accelerators if a.kind == "gpu"} - {""}
    gpu_resource = "amd.com/gpu" if brands == {"amd"} else "nvidia.com/gpu"
    resources = quantities(job, gpu_resource)
    user = settings.run_as_user
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": options.image or settings.image,
        "command": ["/bin/sh", "-c", WRAPPER, job.command, job.stdout_path, job.stderr_path],
        "env": [{"name": key, "value": value} for key, value in job.environment.items()],
        "resources": {"requests": resources, "limits": dict(resources)},
        "securityContext": {"runAsUser": user, "runAsNonRoot": user != 0, "allowPrivilegeEscalation": False},
    }
    if job.working_directory:
        container["workingDir"] = job.working_directory
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": settings.kill_grace,
        "containers": [container],
        **placement(job, settings, options),
    }
    service_account = options.service_account or settings.service_account
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    scratch_size = options.scratch_volume_size or settings.scratch_volume_size
    if scratch_size:
        claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": str(scratch_size)}}}
        storage_class = options.scratch_storage_class or settings.scratch_storage_class
        if storage_class:
            claim["storageClassName"] = storage_class
        pod_spec["volumes"] = [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"metadata": {"labels": labels}, "spec": claim}}}]
        container["volumeMounts"] = [{"name": "scratch", "mountPath": options.scratch_mount_path or DEFAULT_SCRATCH_PATH}]
    spec: dict[str, Any] = {
        "backoffLimit": 0,  # batchgate's client (Toil) decides about retries
        "ttlSecondsAfterFinished": settings.ttl_after_finished,
        "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec},
    }
    if job.wall_time:
        spec["activeDeadlineSeconds"] = math.ceil(job.wall_time)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": settings.namespace, "labels": labels, "annotations": annotations},
        "spec": spec,
    }
