"""A small Kubernetes API server for the tests: batch/v1 Jobs and v1 Pods and Nodes over HTTP.

No real API server can run on these machines, and PyPI's kmock (0.8) serves no resourceVersions,
label selectors or 410 Gone. This one follows the Kubernetes API conventions
(https://kubernetes.io/docs/reference/using-api/api-concepts/) for what the backend relies on:

- one resourceVersion counter for every object; lists carry the version they were taken at;
- `?watch=1&resourceVersion=N` streams every change after N as JSON lines
  ({"type": "ADDED"|"MODIFIED"|"DELETED", "object": ...}); without N it first sends the current
  objects as ADDED; a version older than the kept history gets an ERROR event with a 410 Status
  ("too old resource version"), as a real server answers an expired watch;
- labelSelector (=, ==, !=, in, notin, exists, !exists), fieldSelector metadata.name;
- create (409 AlreadyExists, 422 for a name that is not a DNS-1123 label/subdomain), get
  (404 NotFound), delete with propagationPolicy Foreground (the owner stays, with a
  deletionTimestamp and the foregroundDeletion finalizer, until its dependents are gone),
  Background (the garbage collector deletes the dependents after it) or Orphan;
- a pod being deleted keeps a deletionTimestamp until its kubelet (tests/k8s/k8s_controller.py)
  has stopped its container and calls `remove`;
- GET pods/{name}/log: a container's log (stdout and stderr as one, as the kubelet keeps it) in
  plain text, with `container`, `follow`, `tailLines` and `limitBytes`, and the real server's
  errors (see ApiHandler._log).

The controller plays every other part of the cluster from inside the same process, through
`objects`, `update` and `remove`, and sees changes with `wait_for_change`.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import select
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

Object = dict[str, Any]

KINDS = {  # resource (plural) -> (apiVersion, kind, namespaced)
    "jobs": ("batch/v1", "Job", True),
    "pods": ("v1", "Pod", True),
    "nodes": ("v1", "Node", False),
}
PATH = re.compile(
    r"^/(?:api/v1|apis/batch/v1)(?:/namespaces/(?P<namespace>[^/]+))?/(?P<resource>jobs|pods|nodes)(?:/(?P<name>[^/]+))?/?$"
)
LOG_PATH = re.compile(r"^/api/v1/namespaces/(?P<namespace>[^/]+)/pods/(?P<name>[^/]+)/log$")
LOG_POLL = 0.05  # seconds between looks at a followed log that has nothing new
LOG_CHUNK = 64 * 1024
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# What the API server's strconv.ParseBool takes as true (the Python client sends "True").
GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
HISTORY = 10_000  # events kept for watches to resume from; older versions get 410 Gone


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_object(code: int, reason: str, message: str) -> Object:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status_object(code, reason, message)


# ---- label selectors (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/) ----

SET_REQUIREMENT = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def split_selector(text: str) -> list[str]:
    """Requirements are comma-separated, except for the commas inside `in (a, b)`."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def selector_matcher(text: str) -> Callable[[dict[str, str]], bool]:
    checks: list[Callable[[dict[str, str]], bool]] = []
    for part in split_selector(text):
        set_match = SET_REQUIREMENT.match(part)
        if set_match:
            key, operator, values = set_match.group(1), set_match.group(2), {v.strip() for v in set_match.group(3).split(",")}
            if operator == "in":
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
            continue
        part = part.strip()
        if "!=" in part:
            key, value = (s.strip() for s in part.split("!=", 1))
            checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif "=" in part:
            key, value = (s.strip() for s in part.replace("==", "=").split("=", 1))
            checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif part.startswith("!"):
            checks.append(lambda labels, k=part[1:].strip(): k not in labels)
        else:
            checks.append(lambda labels, k=part: k in labels)
    return lambda labels: all(check(labels) for check in checks)


@dataclass(frozen=True)
class Event:
    version: int
    resource: str
    type: str
    object: Object


class Cluster:
    """The objects, their versions, and the history watches resume from."""

    def __init__(self, history: int = HISTORY) -> None:
        self._lock = threading.Condition()
        self._objects: dict[tuple[str, str, str], Object] = {}  # (resource, namespace, name)
        self._version = 0
        self._history: deque[Event] = deque(maxlen=history)
        self._compacted = 0  # versions up to here can no longer be watched from
        self.requests: dict[str, int] = {}  # "GET jobs" -> count, to measure API calls
        self.dropped_watches = 0
        # (pod uid, container name) -> its log file, kept by the kubelet (the controller)
        self.container_logs: dict[tuple[str, str], Path] = {}

    # ---- reading ------------------------------------------------------------------------

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    def objects(self, resource: str, namespace: str | None = None) -> list[Object]:
        with self._lock:
            return [copy.deepcopy(o) for (r, ns, _), o in self._objects.items() if r == resource and namespace in (None, ns)]

    def size(self, resource: str) -> int:
        """How many objects of a kind there are (cheaply: for polling)."""
        with self._lock:
            return sum(1 for (r, _, _) in self._objects if r == resource)

    def get(self, resource: str, namespace: str, name: str) -> Object | None:
        with self._lock:
            found = self._objects.get((resource, namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def wait_for_change(self, after: int, timeout: float) -> int:
        """Block until the version passes `after` (or `timeout`); return the version."""
        with self._lock:
            self._lock.wait_for(lambda: self._version > after, timeout)
            return self._version

    def events_after(self, version: int) -> list[Event] | None:
        """The events after `version`, or None when they are no longer kept (410 Gone)."""
        with self._lock:
            if version < self._compacted or (self._history and version < self._history[0].version - 1):
                return None
            if not self._history or version >= self._history[-1].version:
                return []
            # Versions in the history are consecutive: the first one wanted is at a known place.
            return list(itertools.islice(self._history, version - self._history[0].version + 1, None))

    # ---- writing ------------------------------------------------------------------------

    def _record(self, resource: str, type_: str, obj: Object) -> None:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        self._history.append(Event(self._version, resource, type_, copy.deepcopy(obj)))
        self._lock.notify_all()

    def create(self, resource: str, namespace: str, body: Object) -> Object:
        api_version, kind, namespaced = KINDS[resource]
        obj = copy.deepcopy(body)
        obj["apiVersion"], obj["kind"] = api_version, kind
        metadata = obj.setdefault("metadata", {})
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
        name = metadata.get("name", "")
        pattern = DNS_LABEL if resource == "pods" else DNS_SUBDOMAIN
        if resource == "jobs" and len(name) > 63 or not pattern.match(name) or len(name) > 253:
            raise ApiError(422, "Invalid", f'{kind} "{name}" is invalid: metadata.name: Invalid value: "{name}": must be a DNS-1123 name')
        if namespaced:
            metadata["namespace"] = namespace
        metadata.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(), generation=1)
        metadata.setdefault("labels", {})
        obj.setdefault("status", {})
        if resource == "jobs":  # what the API server defaults and the job controller adds
            template_labels = obj["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {})
            template_labels.update(
                {"batch.kubernetes.io/controller-uid": metadata["uid"], "batch.kubernetes.io/job-name": name, "controller-uid": metadata["uid"], "job-name": name}
            )
            obj["spec"].setdefault("backoffLimit", 6)
            obj["spec"].setdefault("completions", 1)
            obj["spec"].setdefault("parallelism", 1)
        with self._lock:
            key = (resource, metadata.get("namespace", ""), name)
            if key in self._objects:
                group = "." + api_version.split("/")[0] if "/" in api_version else ""
                raise ApiError(409, "AlreadyExists", f'{resource}{group} "{name}" already exists')
            self._objects[key] = obj
            self._record(resource, "ADDED", obj)
            return copy.deepcopy(obj)

    def update(self, resource: str, namespace: str, name: str, change: Callable[[Object], None]) -> Object | None:
        """Change an object in place (as a controller's PUT of status would); None if gone."""
        with self._lock:
            obj = self._objects.get((resource, namespace, name))
            if obj is None:
                return None
            change(obj)
            self._record(resource, "MODIFIED", obj)
            self._collect(namespace)
            return copy.deepcopy(obj)

    def delete(self, resource: str, namespace: str, name: str, propagation: str = "") -> Object:
        with self._lock:
            obj = self._objects.get((resource, namespace, name))
            if obj is None:
                raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
            metadata = obj["metadata"]
            if resource == "pods":  # graceful: the kubelet stops the container, then removes it
                if "deletionTimestamp" not in metadata:
                    metadata["deletionTimestamp"] = now_rfc3339()
                    self._record(resource, "MODIFIED", obj)
                return copy.deepcopy(obj)
            if resource == "jobs" and not propagation:
                propagation = "Background"  # batch/v1's default is Orphan only for old clients
            dependents = self._dependents(namespace, metadata["uid"])
            if propagation == "Foreground" and dependents:
                if "deletionTimestamp" not in metadata:
                    metadata["deletionTimestamp"] = now_rfc3339()
                    metadata.setdefault("finalizers", []).append("foregroundDeletion")
                    self._record(resource, "MODIFIED", obj)
                for pod in dependents:
                    self.delete("pods", namespace, pod["metadata"]["name"])
                return copy.deepcopy(obj)
            self._remove(resource, namespace, name)
            if propagation != "Orphan":
                for pod in dependents:
                    self.delete("pods", namespace, pod["metadata"]["name"])
            return copy.deepcopy(obj)

    def remove(self, resource: str, namespace: str, name: str) -> None:
        """The object is gone for good (a kubelet's last word on a deleted pod)."""
        with self._lock:
            if (resource, namespace, name) in self._objects:
                self._remove(resource, namespace, name)
                self._collect(namespace)

    def _remove(self, resource: str, namespace: str, name: str) -> None:
        obj = self._objects.pop((resource, namespace, name))
        self._record(resource, "DELETED", obj)

    def _dependents(self, namespace: str, owner_uid: str) -> list[Object]:
        return [
            o
            for (r, ns, _), o in self._objects.items()
            if r == "pods" and ns == namespace and any(ref.get("uid") == owner_uid for ref in o["metadata"].get("ownerReferences", []))
        ]

    def _collect(self, namespace: str) -> None:
        """The garbage collector's foreground rule: an owner waiting for its dependents goes
        once they are gone."""
        for (resource, ns, name), obj in list(self._objects.items()):
            metadata = obj["metadata"]
            if ns == namespace and "foregroundDeletion" in metadata.get("finalizers", []) and not self._dependents(ns, metadata["uid"]):
                self._remove(resource, ns, name)

    def compact(self) -> None:
        """Forget the history so far, as etcd's compaction does: older watches get 410 Gone."""
        with self._lock:
            self._compacted = self._version
            self._history.clear()

    def count(self, request: str) -> None:
        with self._lock:
            self.requests[request] = self.requests.get(request, 0) + 1


class ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiHttpServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK hold every answer back some 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the cluster, not logs
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        cluster = self.server.cluster
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null") if length else None
        if url.path == "/version":
            self._send(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-batchgate-emulator"})
            return
        log_match = LOG_PATH.match(url.path)
        if log_match is not None and method == "GET":
            cluster.count("GET pods/log")
            try:
                self._log(log_match["namespace"], log_match["name"], query)
            except ApiError as error:
                self._send(error.status["code"], error.status)
            return
        match = PATH.match(url.path)
        if match is None or (KINDS[match["resource"]][2] != bool(match["namespace"]) and not (method == "GET" and not match["name"])):
            self._send(404, status_object(404, "NotFound", f"the server could not find the requested resource {url.path}"))
            return
        resource, namespace, name = match["resource"], match["namespace"] or "", match["name"]
        watching = query.get("watch") in GO_TRUE
        cluster.count(f"{'WATCH' if watching else method} {resource}")
        if self.server.latency and not watching:
            time.sleep(self.server.latency)  # what a real server's round trip and etcd write take
        try:
            if method == "GET" and name:
                found = cluster.get(resource, namespace, name)
                if found is None:
                    raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
                self._send(200, found)
            elif method == "GET" and watching:
                self._watch(resource, match["namespace"], query)
            elif method == "GET":
                self._send(200, self._list(resource, match["namespace"], query))
            elif method == "POST" and not name:
                created = cluster.create(resource, namespace, body or {})
                if self.server.lose_create_answers > 0:  # made, but the client never hears so
                    self.server.lose_create_answers -= 1
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._send(201, created)
            elif method == "DELETE" and name:
                propagation = query.get("propagationPolicy") or (body or {}).get("propagationPolicy", "")
                self._send(200, cluster.delete(resource, namespace, name, propagation))
            else:
                raise ApiError(405, "MethodNotAllowed", f"{method} {url.path} is not supported")
        except ApiError as error:
            self._send(error.status["code"], error.status)

    def _matching(self, resource: str, namespace: str | None, query: dict[str, str]) -> Callable[[Object], bool]:
        labels = selector_matcher(query.get("labelSelector", ""))
        fields = dict(part.split("=", 1) for part in query.get("fieldSelector", "").split(",") if "=" in part)
        wanted_name = fields.get("metadata.name")
        return lambda obj: (
            (namespace is None or obj["metadata"].get("namespace") == namespace)
            and labels(obj["metadata"].get("labels") or {})
            and wanted_name in (None, obj["metadata"]["name"])
        )

    def _list(self, resource: str, namespace: str | None, query: dict[str, str]) -> Object:
        api_version, kind, _ = KINDS[resource]
        matches = self._matching(resource, namespace, query)
        with self.server.cluster._lock:  # one consistent snapshot and its version
            version = self.server.cluster.version
            items = [o for o in self.server.cluster.objects(resource) if matches(o)]
        return {"kind": f"{kind}List", "apiVersion": api_version, "metadata": {"resourceVersion": str(version)}, "items": items}

    def _watch(self, resource: str, namespace: str | None, query: dict[str, str]) -> None:
        cluster = self.server.cluster
        matches = self._matching(resource, namespace, query)
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 1800)
        self.server.watching.add(self)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            start = query.get("resourceVersion", "")
            if start in ("", "0"):  # no version: the current objects first, as ADDED
                with cluster._lock:
                    after = cluster.version
                    initial = [o for o in cluster.objects(resource) if matches(o)]
                for obj in initial:
                    self._chunk({"type": "ADDED", "object": obj})
            else:
                after = int(start)
            while time.monotonic() < deadline and not self.server.stopping:
                if self in self.server.dropped:
                    return  # the test cut this connection: close it without the final chunk
                events = cluster.events_after(after)
                if events is None:
                    self._chunk({"type": "ERROR", "object": status_object(410, "Expired", f"too old resource version: {after} ({cluster.version})")})
                    break
                for event in events:
                    after = event.version
                    if event.resource == resource and matches(event.object):
                        self._chunk({"type": event.type, "object": event.object})
                cluster.wait_for_change(after, min(0.5, max(0.0, deadline - time.monotonic())))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, OSError):
            return
        finally:
            self.server.watching.discard(self)
            self.close_connection = True

    # ---- pods/{name}/log ---------------------------------------------------------------------
    #
    # What the real API server and kubelet do, from their sources: the API server validates
    # PodLogOptions (ValidatePodLogOptions: tailLines >= 0, limitBytes > 0, else 422 Invalid),
    # finds the pod (404 `pods "NAME" not found`) and the container
    # (pkg/registry/core/pod/strategy.go LogLocation / validateContainer: 400 `container C is not
    # valid for pod P`, or `a container name must be specified for pod P, choose one of: [...]`),
    # and answers a pod not bound to a node with an empty log ("If pod has not been assigned a
    # host, return an empty location"). The kubelet (pkg/kubelet/kubelet_pods.go,
    # validateContainerLogStatus) refuses a container that has not run, which the API server
    # passes on as 400 BadRequest: `container "C" in pod "P" is waiting to start: REASON` (`image
    # can't be pulled` for ErrImagePull, `trying and failing to pull image` for
    # ImagePullBackOff). Otherwise the log is text/plain, streamed: tailLines "the number of
    # lines from the end of the logs to show", limitBytes "the number of bytes to read from the
    # server before terminating the log output", follow: on until the container has stopped.

    def _log(self, namespace: str, name: str, query: dict[str, str]) -> None:
        tail_lines = self._int_option(query, "tailLines", name, minimum=0)
        limit_bytes = self._int_option(query, "limitBytes", name, minimum=1)
        follow = query.get("follow") in GO_TRUE
        cluster = self.server.cluster
        pod = cluster.get("pods", namespace, name)
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found')
        containers = [c["name"] for c in pod["spec"]["containers"]]
        container = query.get("container", "")
        if not container:
            if len(containers) != 1:
                raise ApiError(400, "BadRequest", f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]")
            container = containers[0]
        elif container not in containers:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        if not pod["spec"].get("nodeName"):
            self._stream_log(iter(()))
            return
        state = self._container_state(pod, container)
        path = cluster.container_logs.get((pod["metadata"]["uid"], container))
        if "running" not in state and "terminated" not in state or path is None:
            reason = (state.get("waiting") or {}).get("reason") or "ContainerCreating"
            said = {"ErrImagePull": "image can't be pulled", "ImagePullBackOff": "trying and failing to pull image"}.get(reason, reason)
            raise ApiError(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: {said}')
        uid = pod["metadata"]["uid"]

        def running() -> bool:
            now = cluster.get("pods", namespace, name)
            return now is not None and now["metadata"]["uid"] == uid and "running" in self._container_state(now, container)

        stopping = lambda: self.server.stopping or self._client_left()  # noqa: E731
        self._stream_log(read_log(path, tail_lines=tail_lines, limit_bytes=limit_bytes, follow=follow, running=running, stopping=stopping))

    def _client_left(self) -> bool:
        """Whether the client closed the connection (it sends nothing while a log streams)."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        try:
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    @staticmethod
    def _int_option(query: dict[str, str], option: str, name: str, *, minimum: int) -> int | None:
        if option not in query:
            return None
        try:
            value = int(query[option])
        except ValueError:
            raise ApiError(400, "BadRequest", f'strconv.ParseInt: parsing "{query[option]}": invalid syntax') from None
        if value < minimum:
            must = "must be greater than or equal to 0" if minimum == 0 else "must be greater than 0"
            raise ApiError(422, "Invalid", f'PodLogOptions "{name}" is invalid: {option}: Invalid value: {value}: {must}')
        return value

    @staticmethod
    def _container_state(pod: Object, container: str) -> Object:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") == container:
                return status.get("state") or {}
        return {}

    def _stream_log(self, chunks: Any) -> None:
        self.server.log_streams.add(self)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for data in chunks:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                self.server.log_bytes_sent += len(data)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self.server.log_streams.discard(self)

    def _chunk(self, event: Object) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _send(self, code: int, payload: Object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code, HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else "")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ApiHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, cluster: Cluster, address: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        super().__init__(address, ApiHandler)
        self.cluster = cluster
        self.watching: set[ApiHandler] = set()
        self.log_streams: set[ApiHandler] = set()  # pod logs being sent
        self.log_bytes_sent = 0  # of pod logs, for the benchmark
        self.dropped: set[ApiHandler] = set()
        self.stopping = False
        self.lose_create_answers = 0  # creates to carry out without answering (a lost connection)
        self.latency = 0.0  # seconds added to every answer but a watch's (for the benchmark)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (a killed service) is no error of the server's."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def drop_watches(self) -> int:
        """Cut every open watch connection, as a load balancer or a restarting server would."""
        handlers = list(self.watching)
        for handler in handlers:
            self.dropped.add(handler)
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.cluster.dropped_watches += len(handlers)
        return len(handlers)

    def stop(self) -> None:
        self.stopping = True
        self.shutdown()
        self.server_close()


def tail_start(log_file: BinaryIO, count: int) -> int:
    """Where the last `count` lines of a file start (a last line without its newline counts as
    one), read backwards a block at a time, as the kubelet's tail.FindTailLineStartIndex does."""
    end = log_file.seek(0, os.SEEK_END)
    position, newlines = end, 0
    while position > 0:
        block = min(LOG_CHUNK, position)
        position -= block
        log_file.seek(position)
        data = log_file.read(block)
        if position + block == end and data.endswith(b"\n"):
            data = data[:-1]  # the newline that ends the last line starts no line
        at = len(data)
        while (at := data.rfind(b"\n", 0, at)) >= 0:
            newlines += 1
            if newlines == count:
                return position + at + 1
    return 0 if count else end


def read_log(
    path: Path, *, tail_lines: int | None, limit_bytes: int | None, follow: bool, running: Callable[[], bool], stopping: Callable[[], bool]
) -> Any:
    """A log file's chunks as the kubelet sends them: from its start or its last `tail_lines`,
    at most `limit_bytes`, and with `follow`, what is written after, until the container has
    stopped and the file is drained (or the file goes with its pod)."""
    try:
        log_file = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    with log_file:
        if tail_lines is not None:
            log_file.seek(tail_start(log_file, tail_lines))
        data = log_file.read(LOG_CHUNK)
        left = limit_bytes
        while True:
            if data:
                if left is not None:
                    data = data[:left]
                    left -= len(data)
                yield data
                if left == 0:
                    return
            elif not follow or stopping():
                return
            was_running = follow and running()  # looked at before the read: a stopped container has written all
            data = log_file.read(LOG_CHUNK)
            if not data and follow:
                if not was_running:
                    return
                time.sleep(LOG_POLL)


def serve(cluster: Cluster) -> tuple[ApiHttpServer, threading.Thread]:
    server = ApiHttpServer(cluster)
    thread = threading.Thread(target=server.serve_forever, name="k8s-apiserver", daemon=True)
    thread.start()
    return server, thread


def kubeconfig(url: str, namespace: str = "default") -> str:
    """A kubeconfig naming this server, as `kubectl config view --raw` would print one."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulated", "cluster": {"server": url}}],
            "users": [{"name": "tester", "user": {"token": "not-checked"}}],
            "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "tester", "namespace": namespace}}],
            "current-context": "emulated",
        }
    )

