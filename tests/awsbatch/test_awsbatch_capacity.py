"""What the queue's compute environments can run (services/awsbatch/capacity.py), on the shapes
AWS Batch's DescribeComputeEnvironments and EC2's DescribeInstanceTypes answer with."""

from __future__ import annotations

from batchgate.services.awsbatch.capacity import ComputeEnvironments

GIB = 1024**3
P3 = {"InstanceType": "p3.8xlarge", "VCpuInfo": {"DefaultVCpus": 32}, "MemoryInfo": {"SizeInMiB": 249856}, "GpuInfo": {"Gpus": [{"Count": 4}]}}
M5 = {"InstanceType": "m5.large", "VCpuInfo": {"DefaultVCpus": 2}, "MemoryInfo": {"SizeInMiB": 8192}}


def environment(name: str, kind: str, max_vcpus: int, *instance_types: str) -> dict[str, object]:
    return {
        "computeEnvironmentName": name,
        "state": "ENABLED",
        "status": "VALID",
        "computeResources": {"type": kind, "maxvCpus": max_vcpus, "instanceTypes": list(instance_types)},
    }


def test_one_job_gets_at_most_the_largest_instance_capped_by_max_vcpus() -> None:
    known = ComputeEnvironments(
        [environment("gpu", "SPOT", 16, "p3.8xlarge"), environment("cpu", "EC2", 64, "m5.large")],
        {"p3.8xlarge": P3, "m5.large": M5},
    )
    limits = known.limits(max_disk=None, max_gpus=4)
    assert (limits.max_cores, limits.max_memory) == (16, 249856 * 1024**2)
    assert [(a.kind, a.count) for a in limits.accelerators] == [("gpu", 4)]
    gpu_type, cpu_type = known.node_types()
    assert (gpu_type.cores, gpu_type.preemptible, gpu_type.count, gpu_type.accelerators[0].count) == (32, True, 1, 4)
    assert (cpu_type.cores, cpu_type.memory, cpu_type.preemptible, cpu_type.count) == (2, 8 * GIB, False, 32)
    assert [(node.name, node.cores, node.state) for node in known.nodes()] == [("gpu", 16, "ENABLED VALID"), ("cpu", 64, "ENABLED VALID")]


def test_what_aws_does_not_say_stays_unknown() -> None:
    known = ComputeEnvironments([environment("any", "EC2", 256, "optimal"), environment("m5s", "EC2", 64, "m5")], {})
    limits = known.limits(max_disk=None, max_gpus=0)
    assert limits.max_cores == 256 and limits.max_memory is None and limits.accelerators == ()
    assert known.node_types() == []
    assert ComputeEnvironments().limits(max_disk=100 * GIB, max_gpus=0).max_cores is None
