"""The rest of a cluster for the emulated API server: job controller, scheduler and kubelet.

It plays, from inside the test process and on tests/k8s/k8s_apiserver.py's objects, what Kubernetes'
own components do for batch/v1 Jobs (https://kubernetes.io/docs/concepts/workloads/controllers/job/):

- job controller: a Job gets a pod from its template (owned by it, labelled as the real one
  labels them); the pod's end becomes the Job's conditions: Complete (with SuccessCriteriaMet),
  or, past backoffLimit, Failed with reason BackoffLimitExceeded; past activeDeadlineSeconds its
  pods are deleted and it is Failed with reason DeadlineExceeded; ttlSecondsAfterFinished
  deletes a finished Job;
- scheduler: binds a pod to a node whose labels, taints and free allocatable resources fit,
  else marks it PodScheduled=False, reason Unschedulable, with a message in the scheduler's words
  ("0/1 nodes are available: 1 Insufficient cpu.");
- kubelet: runs the pod's container as a real container on the local Docker engine, with its
  command, environment, working directory, user, cpu and memory limits (the kernel's OOM kill
  becomes state.terminated.reason OOMKilled), and writes the container's state back: waiting
  (ErrImagePull / ImagePullBackOff for an image the engine does not have, InvalidImageName,
  CreateContainerConfigError for a root user under runAsNonRoot), running, terminated with the
  exit code and startedAt/finishedAt (whole seconds, as the API carries them). A deleted pod's
  container is stopped (SIGTERM, then SIGKILL after the grace period) before the pod goes.
  Like the kubelet's container runtime, it keeps each container's stdout and stderr as one log
  file (`docker logs -f`, both streams into one file, in the order the engine read them), which
  the API server serves at pods/{name}/log; the container is reported terminated only once its
  log is complete, and the log goes with the pod.

Containers run with no network, and with `shared_paths` mounted at the same path, as a shared
filesystem would be on a real cluster (the tests' temporary directories).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from k8s_apiserver import Cluster, Object, now_rfc3339
from kubernetes.utils import parse_quantity

log = logging.getLogger(__name__)

RUNTIME_LABEL = "batchgate.k8s-emulator"
IMAGE_REFERENCE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?$")
TICK = 0.05  # seconds between looks when nothing changes
IMAGE_RETRY = 2.0  # seconds between pulls of a missing image (the kubelet's back-off, shortened)
LOG_DRAIN_SECONDS = 30.0  # how long a stopped container's `docker logs -f` may take to finish


def seconds_rfc3339(docker_time: str) -> str:
    """Docker's nanosecond time as the API's whole-second RFC 3339."""
    return docker_time.split(".")[0].rstrip("Z") + "Z"


def condition(kind: str, status: str, reason: str = "", message: str = "") -> Object:
    found: Object = {"type": kind, "status": status, "lastTransitionTime": now_rfc3339()}
    if reason:
        found["reason"] = reason
    if message:
        found["message"] = message
    return found


def tolerates(tolerations: Sequence[Object], taint: Object) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
            continue
        if toleration.get("operator") == "Exists" and toleration.get("key") in (None, "", taint["key"]):
            return True
        if toleration.get("key") == taint["key"] and toleration.get("value", "") == taint.get("value", ""):
            return True
    return False


def expression_holds(expression: Object, labels: dict[str, str]) -> bool:
    key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
    if operator == "In":
        return labels.get(key) in values
    if operator == "NotIn":
        return labels.get(key) not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    raise ValueError(f"unsupported node selector operator {operator}")


def requests_of(pod: Object) -> dict[str, float]:
    total: dict[str, float] = {}
    for container in pod["spec"]["containers"]:
        for name, quantity in (container.get("resources", {}).get("requests") or {}).items():
            total[name] = total.get(name, 0.0) + float(parse_quantity(quantity))
    return total


def terminal(pod: Object) -> bool:
    return pod.get("status", {}).get("phase") in ("Succeeded", "Failed")


class Controller:
    def __init__(self, cluster: Cluster, *, shared_paths: Sequence[str] = (), workers: int = 4) -> None:
        self.cluster = cluster
        self.shared_paths = list(shared_paths)
        self.token = uuid.uuid4().hex[:12]  # labels this controller's containers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="k8s-kubelet")
        self._containers: dict[str, str] = {}  # pod uid -> container id ("" while starting)
        self._busy: set[str] = set()  # pod uids with docker work in flight
        self._image_checked: dict[str, tuple[bool, float]] = {}  # image -> (present, when looked)
        self._job_started: dict[str, float] = {}  # job uid -> monotonic start (deadlines)
        self._job_finished: dict[str, float] = {}  # job uid -> monotonic end (ttl)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="k8s-controller", daemon=True)
        self._log_dir = Path(tempfile.mkdtemp(prefix="k8s-pod-logs-"))
        self._log_copiers: dict[str, subprocess.Popen[bytes]] = {}  # pod uid -> its `docker logs -f`

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._pool.shutdown(wait=True, cancel_futures=True)
        leftover = docker("ps", "-aq", "--filter", f"label={RUNTIME_LABEL}={self.token}").split()
        if leftover:
            docker("rm", "-f", *leftover, check=False)
        for uid in list(self._log_copiers):
            self._drop_log(uid)
        with contextlib.suppress(OSError):
            self._log_dir.rmdir()

    # ---- the loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        seen = 0
        while not self._stop.is_set():
            seen = self.cluster.wait_for_change(seen, TICK)
            try:
                self.reconcile()
            except Exception:  # keep playing the cluster; the test sees what went wrong in its job
                log.exception("controller pass failed")

    def reconcile(self) -> None:
        jobs = self.cluster.objects("jobs")
        pods = self.cluster.objects("pods")
        nodes = self.cluster.objects("nodes")
        by_owner: dict[str, list[Object]] = {}
        for pod in pods:
            for owner in pod["metadata"].get("ownerReferences", []):
                by_owner.setdefault(owner["uid"], []).append(pod)
        for job in jobs:
            self._control_job(job, by_owner.get(job["metadata"]["uid"], []))
        self._poll_containers(pods)
        bound = [pod for pod in pods if pod["spec"].get("nodeName") and not terminal(pod)]
        for pod in pods:
            uid = pod["metadata"]["uid"]
            with self._lock:
                if uid in self._busy:
                    continue
            if "deletionTimestamp" in pod["metadata"]:
                self._submit(uid, self._stop_pod, pod)
            elif terminal(pod):
                continue
            elif not pod["spec"].get("nodeName"):
                self._schedule(pod, nodes, bound)
            elif uid not in self._containers:
                self._submit(uid, self._start_pod, pod)

    def _submit(self, uid: str, work: Any, pod: Object) -> None:
        with self._lock:
            self._busy.add(uid)

        def run() -> None:
            try:
                work(pod)
            except Exception:
                log.exception("kubelet work on %s failed", pod["metadata"]["name"])
            finally:
                with self._lock:
                    self._busy.discard(uid)

        self._pool.submit(run)

    # ---- job controller ---------------------------------------------------------------------

    def _control_job(self, job: Object, pods: list[Object]) -> None:
        metadata, spec, status = job["metadata"], job["spec"], job.get("status", {})
        namespace, name, uid = metadata["namespace"], metadata["name"], metadata["uid"]
        finished = any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in status.get("conditions", []))
        if finished:
            ttl = spec.get("ttlSecondsAfterFinished")
            ended = self._job_finished.setdefault(uid, time.monotonic())
            if ttl is not None and time.monotonic() - ended >= ttl and "deletionTimestamp" not in metadata:
                self.cluster.delete("jobs", namespace, name, "Background")
            return
        if "deletionTimestamp" in metadata:
            return
        started = self._job_started.setdefault(uid, time.monotonic())
        active = [pod for pod in pods if not terminal(pod) and "deletionTimestamp" not in pod["metadata"]]
        succeeded = sum(1 for pod in pods if pod.get("status", {}).get("phase") == "Succeeded")
        failed = sum(1 for pod in pods if pod.get("status", {}).get("phase") == "Failed")
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and time.monotonic() - started >= deadline:
            for pod in active:
                self.cluster.delete("pods", namespace, pod["metadata"]["name"])
            self._finish(job, "Failed", "DeadlineExceeded", "Job was active longer than specified deadline", succeeded, failed + len(active))
            return
        if succeeded >= spec.get("completions", 1):
            self._finish(job, "Complete", "", "", succeeded, failed)
            return
        if failed > spec.get("backoffLimit", 6):
            self._finish(job, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit", succeeded, failed)
            return
        if not active:
            self._create_pod(job)
        if not status.get("startTime") or status.get("active") != (len(active) or 1) or status.get("failed", 0) != failed:

            def running(obj: Object) -> None:
                obj["status"].setdefault("startTime", now_rfc3339())
                obj["status"].update(active=len(active) or 1, failed=failed, succeeded=succeeded)

            self.cluster.update("jobs", namespace, name, running)

    def _create_pod(self, job: Object) -> None:
        template = job["spec"]["template"]
        name = job["metadata"]["name"]
        pod = {
            "metadata": {
                "generateName": f"{name[:57]}-",
                "labels": dict(template["metadata"].get("labels", {})),
                "annotations": dict(template["metadata"].get("annotations", {})),
                "ownerReferences": [
                    {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
                ],
            },
            "spec": template["spec"],
            "status": {"phase": "Pending"},
        }
        self.cluster.create("pods", job["metadata"]["namespace"], pod)

    def _finish(self, job: Object, kind: str, reason: str, message: str, succeeded: int, failed: int) -> None:
        def finish(obj: Object) -> None:
            status = obj["status"]
            status.update(active=0, succeeded=succeeded, failed=failed)
            if kind == "Complete":
                status["conditions"] = [condition("SuccessCriteriaMet", "True"), condition("Complete", "True")]
                status["completionTime"] = now_rfc3339()
            else:
                status["conditions"] = [condition("FailureTarget", "True", reason, message), condition("Failed", "True", reason, message)]

        self.cluster.update("jobs", job["metadata"]["namespace"], job["metadata"]["name"], finish)

    # ---- scheduler --------------------------------------------------------------------------

    def _schedule(self, pod: Object, nodes: list[Object], bound: list[Object]) -> None:
        spec = pod["spec"]
        wanted = requests_of(pod)
        reasons: dict[str, int] = {}
        chosen = None
        for node in nodes:
            reason = self._misfit(spec, wanted, node, [p for p in bound if p["spec"].get("nodeName") == node["metadata"]["name"]])
            if reason is None:
                chosen = node
                break
            reasons[reason] = reasons.get(reason, 0) + 1
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        if chosen is not None:
            node_name = chosen["metadata"]["name"]

            def bind(obj: Object) -> None:
                obj["spec"]["nodeName"] = node_name
                obj["status"]["conditions"] = [condition("PodScheduled", "True")]

            self.cluster.update("pods", namespace, name, bind)
            bound.append({**pod, "spec": {**spec, "nodeName": node_name}})
            return
        explained = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
        message = f"0/{len(nodes)} nodes are available: {explained}." if nodes else "no nodes available to schedule pods"
        current = [c for c in pod.get("status", {}).get("conditions", []) if c["type"] == "PodScheduled"]
        if current and current[0].get("message") == message:
            return

        def unschedulable(obj: Object) -> None:
            obj["status"]["conditions"] = [condition("PodScheduled", "False", "Unschedulable", message)]

        self.cluster.update("pods", namespace, name, unschedulable)

    @staticmethod
    def _misfit(spec: Object, wanted: dict[str, float], node: Object, bound: list[Object]) -> str | None:
        labels = node["metadata"].get("labels", {})
        if node["spec"].get("unschedulable"):
            return "node(s) were unschedulable"
        if any(labels.get(key) != value for key, value in (spec.get("nodeSelector") or {}).items()):
            return "node(s) didn't match Pod's node affinity/selector"
        required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
        if required and not any(
            all(expression_holds(e, labels) for e in term.get("matchExpressions", [])) for term in required["nodeSelectorTerms"]
        ):
            return "node(s) didn't match Pod's node affinity/selector"
        for taint in node["spec"].get("taints", []):
            if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(spec.get("tolerations") or [], taint):
                return f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"
        allocatable = node["status"].get("allocatable", {})
        used: dict[str, float] = {}
        for other in bound:
            for resource, amount in requests_of(other).items():
                used[resource] = used.get(resource, 0.0) + amount
        for resource, amount in wanted.items():
            if amount > float(parse_quantity(allocatable.get(resource, "0"))) - used.get(resource, 0.0):
                return f"Insufficient {resource}"
        return None

    # ---- kubelet ----------------------------------------------------------------------------

    def _set_waiting(self, pod: Object, reason: str, message: str) -> None:
        container = pod["spec"]["containers"][0]

        def waiting(obj: Object) -> None:
            obj["status"]["containerStatuses"] = [
                {"name": container["name"], "image": container["image"], "imageID": "", "ready": False, "restartCount": 0, "started": False,
                 "state": {"waiting": {"reason": reason, "message": message}}}
            ]

        self.cluster.update("pods", pod["metadata"]["namespace"], pod["metadata"]["name"], waiting)

    def _image_present(self, image: str) -> bool:
        present, when = self._image_checked.get(image, (False, 0.0))
        if present or time.monotonic() - when < IMAGE_RETRY:
            return present
        present = subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0
        self._image_checked[image] = (present, time.monotonic())
        return present

    def _start_pod(self, pod: Object) -> None:
        uid = pod["metadata"]["uid"]
        container = pod["spec"]["containers"][0]
        image = container["image"]
        if not IMAGE_REFERENCE.match(image):
            self._set_waiting(pod, "InvalidImageName", f'Failed to apply default image tag "{image}": couldn\'t parse image name "{image}": invalid reference format')
            self._containers[uid] = "invalid"
            return
        if not self._image_present(image):
            current = ((pod["status"].get("containerStatuses") or [{}])[0].get("state") or {}).get("waiting", {}).get("reason")
            if current is None:
                self._set_waiting(pod, "ErrImagePull", f'failed to pull and unpack image "{image}": no registry can be reached and the image is not on the node')
            elif current == "ErrImagePull":
                self._set_waiting(pod, "ImagePullBackOff", f'Back-off pulling image "{image}"')
            return
        security = {**(pod["spec"].get("securityContext") or {}), **(container.get("securityContext") or {})}
        user = security.get("runAsUser")
        if security.get("runAsNonRoot") and (user is None or user == 0):
            message = "container's runAsUser breaks non-root policy" if user == 0 else "container has runAsNonRoot and image will run as root"
            self._set_waiting(pod, "CreateContainerConfigError", message)
            self._containers[uid] = "refused"
            return
        argv = ["run", "-d", "--name", f"bgk8s-{uid}", "--label", f"{RUNTIME_LABEL}={self.token}", "--network", "none"]
        if user is not None:
            argv += ["--user", f"{user}:{security.get('runAsGroup', user)}"]
        limits = container.get("resources", {}).get("limits") or {}
        if "memory" in limits:
            memory = int(parse_quantity(limits["memory"]))
            argv += ["--memory", str(memory), "--memory-swap", str(memory)]
        if "cpu" in limits:
            argv += ["--cpus", f"{max(0.01, float(parse_quantity(limits['cpu']))):.3f}"]
        for variable in container.get("env") or []:
            argv += ["--env", f"{variable['name']}={variable.get('value', '')}"]
        if container.get("workingDir"):
            argv += ["--workdir", container["workingDir"]]
        for mount in container.get("volumeMounts") or []:
            argv += ["--volume", mount["mountPath"]]  # an anonymous volume, removed with the container
        for path in self.shared_paths:
            argv += ["--volume", f"{path}:{path}"]
        command = list(container.get("command") or [])
        if command:
            argv += ["--entrypoint", command[0]]
        argv += [image, *command[1:], *(container.get("args") or [])]
        self._containers[uid] = ""
        started = subprocess.run(["docker", *argv], capture_output=True, text=True)
        if started.returncode != 0:
            self._containers[uid] = "failed"
            self._set_waiting(pod, "RunContainerError", started.stderr.strip())
            return
        container_id = started.stdout.strip()
        self._containers[uid] = container_id
        self._copy_log(pod, container["name"], container_id)

        def running(obj: Object) -> None:
            if terminal(obj):
                return
            obj["status"].update(
                phase="Running",
                startTime=obj["status"].get("startTime") or now_rfc3339(),
                conditions=[condition(kind, "True") for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
                containerStatuses=[
                    {"name": container["name"], "image": image, "imageID": f"docker://{image}", "containerID": f"docker://{container_id}", "ready": True,
                     "restartCount": 0, "started": True, "state": {"running": {"startedAt": now_rfc3339()}}}
                ],
            )

        self.cluster.update("pods", pod["metadata"]["namespace"], pod["metadata"]["name"], running)

    def _poll_containers(self, pods: list[Object]) -> None:
        """One `docker inspect` for every running container; write back the ones that ended."""
        watched = {
            self._containers[p["metadata"]["uid"]]: p
            for p in pods
            if len(self._containers.get(p["metadata"]["uid"], "")) == 64 and p["status"].get("phase") == "Running"
            and "deletionTimestamp" not in p["metadata"]
        }
        if not watched:
            return
        shown = subprocess.run(["docker", "inspect", *watched], capture_output=True, text=True)
        for state in json.loads(shown.stdout or "[]"):
            if state["State"]["Running"] or state["State"]["Status"] == "created":
                continue
            pod = watched[state["Id"]]
            with self._lock:
                if pod["metadata"]["uid"] in self._busy:
                    continue
            self._submit(pod["metadata"]["uid"], lambda p, s=state: self._terminated(p, s), pod)

    def _terminated(self, pod: Object, inspected: Object) -> None:
        state = inspected["State"]
        code = state["ExitCode"]
        reason = "OOMKilled" if state["OOMKilled"] else ("Completed" if code == 0 else "Error")
        container_id = inspected["Id"]
        self._finish_log(pod["metadata"]["uid"], container_id)  # all of it is in the log before anyone hears it ended

        def ended(obj: Object) -> None:
            statuses = obj["status"].get("containerStatuses") or [{}]
            statuses[0].update(
                ready=False,
                started=False,
                state={
                    "terminated": {
                        "exitCode": code,
                        "reason": reason,
                        "startedAt": seconds_rfc3339(state["StartedAt"]),
                        "finishedAt": seconds_rfc3339(state["FinishedAt"]),
                        "containerID": f"docker://{container_id}",
                    }
                },
            )
            obj["status"].update(phase="Succeeded" if code == 0 else "Failed", containerStatuses=statuses)
            obj["status"]["conditions"] = [condition("PodScheduled", "True"), condition("Ready", "False", "PodCompleted")]

        self.cluster.update("pods", pod["metadata"]["namespace"], pod["metadata"]["name"], ended)
        docker("rm", "-v", container_id, check=False)

    def _stop_pod(self, pod: Object) -> None:
        container_id = self._containers.pop(pod["metadata"]["uid"], "")
        if len(container_id) == 64:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
            docker("stop", "--time", str(int(grace)), container_id, check=False)
            docker("rm", "-v", "-f", container_id, check=False)
        self._drop_log(pod["metadata"]["uid"])  # the kubelet removes a deleted pod's logs
        self.cluster.remove("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])

    # ---- container logs ---------------------------------------------------------------------

    def _copy_log(self, pod: Object, container: str, container_id: str) -> None:
        """Keep the container's stdout and stderr in one file, as a container runtime does for
        the kubelet (both streams into the same open file: lines in the order the engine read
        them), and tell the API server where it is."""
        uid = pod["metadata"]["uid"]
        path = self._log_dir / f"{uid}-{container}.log"
        with open(path, "ab") as log_file:
            copier = subprocess.Popen(["docker", "logs", "--follow", container_id], stdout=log_file, stderr=subprocess.STDOUT)
        self._log_copiers[uid] = copier
        self.cluster.container_logs[(uid, container)] = path

    def _finish_log(self, uid: str, container_id: str) -> None:
        """Make a stopped container's log complete. `docker logs -f` ends with the container,
        at times before the engine has logged a last line the container left without its
        newline; the engine's whole log (`docker logs`, read now) has it, and what the copy
        lacks is added at its end."""
        copier = self._log_copiers.get(uid)
        if copier is None:
            return
        try:
            copier.wait(LOG_DRAIN_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("the log of pod %s was still being copied after %g s", uid, LOG_DRAIN_SECONDS)
            copier.kill()
            copier.wait()
        path = next((path for (owner, _), path in self.cluster.container_logs.items() if owner == uid), None)
        if path is None:
            return
        whole = subprocess.run(["docker", "logs", container_id], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False).stdout
        with open(path, "ab") as log_file:
            copied = log_file.tell()
            if len(whole) > copied:
                log_file.write(whole[copied:])

    def _drop_log(self, uid: str) -> None:
        copier = self._log_copiers.pop(uid, None)
        if copier is not None and copier.poll() is None:
            copier.kill()
            copier.wait()
        for key in [key for key in self.cluster.container_logs if key[0] == uid]:
            path = self.cluster.container_logs.pop(key)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # ---- what tests do to the cluster -------------------------------------------------------

    def evict(self, pod_name: str, namespace: str = "default") -> None:
        """Evict a running pod as the kubelet does under node pressure: stop its container and
        fail the pod with reason Evicted (and the DisruptionTarget condition)."""
        pod = self.cluster.get("pods", namespace, pod_name)
        assert pod is not None, f"no pod {pod_name}"
        container_id = self._containers.pop(pod["metadata"]["uid"], "")
        self._containers[pod["metadata"]["uid"]] = "evicted"
        if len(container_id) == 64:
            docker("kill", container_id, check=False)
            self._finish_log(pod["metadata"]["uid"], container_id)
            docker("rm", "-f", "-v", container_id, check=False)

        def evicted(obj: Object) -> None:
            obj["status"].update(
                phase="Failed",
                reason="Evicted",
                message="The node was low on resource: memory. ",
                conditions=[condition("DisruptionTarget", "True", "TerminationByKubelet", "The node was low on resource: memory. ")],
            )
            for status in obj["status"].get("containerStatuses") or []:
                status["state"] = {"terminated": {"exitCode": 137, "reason": "Error", "startedAt": now_rfc3339(), "finishedAt": now_rfc3339()}}

        self.cluster.update("pods", namespace, pod_name, evicted)


def docker(*args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout

