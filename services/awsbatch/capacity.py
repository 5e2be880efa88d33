"""What the job queue's compute environments can run, as AWS Batch and EC2 describe them.

The most one job can have is the largest instance type's vCPUs and memory (EC2's
DescribeInstanceTypes), capped by the environment's maxvCpus. Families ("m5"), "optimal",
Fargate, or types EC2 will not describe leave what they hold unknown: nothing is invented.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from batchgate.driver import AcceleratorRequest, Limits
from batchgate.v1 import batchgate_pb2 as pb

from .aws import Calls
from .jobs import MIB

log = logging.getLogger(__name__)

SPOT_TYPES = ("SPOT", "FARGATE_SPOT")


@dataclass
class ComputeEnvironments:
    environments: list[dict[str, Any]] = field(default_factory=list)  # DescribeComputeEnvironments' entries
    instance_types: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> DescribeInstanceTypes' entry

    def limits(self, *, max_disk: int | None, max_gpus: int) -> Limits:
        cores: list[float] = []
        memory: list[int] = []
        for resources in self._resources():
            biggest = self._biggest_instance(resources.get("instanceTypes") or [])
            max_vcpus = resources.get("maxvCpus")
            if biggest is not None:
                vcpus, mib = biggest
                cores.append(min(vcpus, max_vcpus) if max_vcpus else vcpus)
                memory.append(mib * MIB)
            elif max_vcpus:
                cores.append(max_vcpus)
        return Limits(
            max_cores=max(cores) if cores else None,
            max_memory=max(memory) if memory and len(memory) == len(self.environments) else None,
            max_disk=max_disk,
            accelerators=(AcceleratorRequest(count=max_gpus, kind="gpu"),) if max_gpus else (),
        )

    def node_types(self) -> list[pb.NodeType]:
        types: list[pb.NodeType] = []
        for resources in self._resources():
            for name in resources.get("instanceTypes") or []:
                entry = self.instance_types.get(name)
                if entry is None:
                    continue  # a family or "optimal": what AWS would launch is not known
                vcpus = entry["VCpuInfo"]["DefaultVCpus"]
                gpus = sum(gpu.get("Count", 0) for gpu in (entry.get("GpuInfo") or {}).get("Gpus", []))
                types.append(
                    pb.NodeType(
                        cores=vcpus,
                        memory=entry["MemoryInfo"]["SizeInMiB"] * MIB,
                        accelerators=[pb.Accelerator(count=gpus, kind="gpu")] if gpus else [],
                        preemptible=resources.get("type") in SPOT_TYPES,
                        count=max(1, int(resources.get("maxvCpus", 0)) // vcpus),  # at most this many fit the environment
                    )
                )
        return types

    def nodes(self) -> list[pb.Node]:
        """The compute environments themselves: AWS Batch does not list the instances behind them."""
        return [
            pb.Node(
                name=environment.get("computeEnvironmentName", ""),
                state=f"{environment.get('state', '')} {environment.get('status', '')}".strip(),
                cores=float((environment.get("computeResources") or {}).get("maxvCpus", 0)),
                preemptible=(environment.get("computeResources") or {}).get("type") in SPOT_TYPES,
            )
            for environment in self.environments
        ]

    def _resources(self) -> list[dict[str, Any]]:
        return [environment.get("computeResources") or {} for environment in self.environments]

    def _biggest_instance(self, names: list[str]) -> tuple[float, int] | None:
        """The most vCPUs and MiB one job can have among these instance types, if all are known."""
        described = [self.instance_types.get(name) for name in names]
        if not described or any(entry is None for entry in described):
            return None
        vcpus = max(entry["VCpuInfo"]["DefaultVCpus"] for entry in described if entry)
        mib = max(entry["MemoryInfo"]["SizeInMiB"] for entry in described if entry)
        return float(vcpus), int(mib)


def describe(calls: Calls, queue: str, ec2: Callable[[], Any]) -> ComputeEnvironments:
    """The queue's compute environments (raises what `calls` raises), with their instance types
    as EC2 describes them where it will."""
    queues = calls("describe_job_queues", jobQueues=[queue]).get("jobQueues", [])
    names = [entry["computeEnvironment"] for found in queues for entry in found.get("computeEnvironmentOrder", [])]
    environments = calls("describe_compute_environments", computeEnvironments=names).get("computeEnvironments", []) if names else []
    described = ComputeEnvironments(environments=environments)
    wanted = sorted({name for resources in described._resources() for name in resources.get("instanceTypes") or [] if "." in name})
    if wanted:
        try:
            answer = ec2().describe_instance_types(InstanceTypes=wanted)
        except Exception as error:  # capacity is a nicety: unknown is an honest answer
            log.info("EC2 does not describe instance types %s: %s", wanted, error)
        else:
            described.instance_types = {entry["InstanceType"]: entry for entry in answer.get("InstanceTypes", [])}
    return described
