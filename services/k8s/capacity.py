"""What the cluster's nodes offer (allocatable cpu, memory, ephemeral-storage, GPUs, spot), as
the kit's Limits and the API's Node and NodeType: one node list, cached."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from kubernetes import client
from kubernetes.utils import parse_quantity

from batchgate.driver import AcceleratorRequest, Limits
from batchgate.v1 import batchgate_pb2 as pb

from .calls import observed
from .manifest import SPOT_LABELS

log = logging.getLogger(__name__)

Object = dict[str, Any]
GPU_RESOURCES = {"nvidia.com/gpu": "nvidia", "amd.com/gpu": "amd"}


class NodeCache:
    """The node list, asked for at most once per `max_age` (limits are checked at every issue)."""

    def __init__(self, core: client.CoreV1Api, max_age: float, backend: str) -> None:
        self._core = core
        self._backend = backend
        self._max_age = max_age
        self._nodes: list[Object] = []
        self._at = -float("inf")
        self._lock = threading.Lock()

    def get(self, *, fresh: bool = False) -> list[Object]:
        with self._lock:
            if time.monotonic() - self._at < (1.0 if fresh else self._max_age):
                return self._nodes
            try:
                with observed(self._backend, "list nodes"):
                    listed = self._core.list_node(_preload_content=False)
            except Exception as error:  # an unreachable API server: keep what was known
                log.warning("listing nodes: %s", error)
                return self._nodes
            self._nodes = json.loads(listed.data).get("items") or []
            self._at = time.monotonic()
            return self._nodes


def quantity(node: Object, resource: str) -> float:
    return float(parse_quantity(((node.get("status") or {}).get("allocatable") or {}).get(resource, "0")))


def schedulable(node: Object) -> bool:
    return not (node.get("spec") or {}).get("unschedulable")


def spot(node: Object) -> bool:
    labels = node["metadata"].get("labels") or {}
    return any(labels.get(key) == value for key, value in SPOT_LABELS)


def accelerators(node: Object, model_label: str) -> tuple[AcceleratorRequest, ...]:
    model = (node["metadata"].get("labels") or {}).get(model_label, "")
    return tuple(
        AcceleratorRequest(count=int(quantity(node, resource)), kind="gpu", model=model, brand=brand)
        for resource, brand in GPU_RESOURCES.items()
        if quantity(node, resource) >= 1
    )


def state(node: Object) -> str:
    if not schedulable(node):
        return "SchedulingDisabled"
    ready = [c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"]
    return "Ready" if ready and ready[0].get("status") == "True" else "NotReady"


def limits(nodes: list[Object], model_label: str) -> Limits:
    usable = [node for node in nodes if schedulable(node)]
    if not usable:
        return Limits()  # not known (yet): the API server will say
    most: dict[tuple[str, str, str], int] = {}
    for node in usable:
        for offered in accelerators(node, model_label):
            key = (offered.kind, offered.model, offered.brand)
            most[key] = max(offered.count, most.get(key, 0))
    return Limits(
        max_cores=max(quantity(node, "cpu") for node in usable),
        max_memory=int(max(quantity(node, "memory") for node in usable)),
        max_disk=int(max(quantity(node, "ephemeral-storage") for node in usable)) or None,
        accelerators=tuple(AcceleratorRequest(count=count, kind=kind, model=model, brand=brand) for (kind, model, brand), count in most.items()),
    )


def to_proto(offered: Iterable[AcceleratorRequest]) -> list[pb.Accelerator]:
    return [pb.Accelerator(count=a.count, kind=a.kind, model=a.model, brand=a.brand) for a in offered]


def nodes(listed: list[Object], our_pods: list[Object], model_label: str) -> list[pb.Node]:
    """Each node, with what this service's running pods take of it."""
    used: dict[str, tuple[float, float, int]] = {}
    for pod in our_pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        requests = (pod["spec"]["containers"][0].get("resources") or {}).get("requests") or {}
        cores, memory, count = used.get(node_name, (0.0, 0.0, 0))
        used[node_name] = (cores + float(parse_quantity(requests.get("cpu", "0"))), memory + float(parse_quantity(requests.get("memory", "0"))), count + 1)
    made = []
    for node in listed:
        name = node["metadata"]["name"]
        cores, memory, count = used.get(name, (0.0, 0.0, 0))
        made.append(
            pb.Node(
                name=name,
                state=state(node),
                cores=quantity(node, "cpu"),
                cores_used=cores,
                memory=int(quantity(node, "memory")),
                memory_used=int(memory),
                accelerators=to_proto(accelerators(node, model_label)),
                preemptible=spot(node),
                running_jobs=count,
            )
        )
    return made


def node_types(listed: list[Object], model_label: str) -> list[pb.NodeType]:
    shapes: dict[tuple[float, int, int, tuple[AcceleratorRequest, ...], bool], int] = {}
    for node in listed:
        shape = (quantity(node, "cpu"), int(quantity(node, "memory")), int(quantity(node, "ephemeral-storage")), accelerators(node, model_label), spot(node))
        shapes[shape] = shapes.get(shape, 0) + 1
    return [
        pb.NodeType(cores=cores, memory=memory, disk=disk, accelerators=to_proto(offered), preemptible=preemptible, count=count)
        for (cores, memory, disk, offered, preemptible), count in shapes.items()
    ]
