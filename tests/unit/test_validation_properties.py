"""Whatever a client sends, validation either accepts the spec or names the field it refuses;
it never fails any other way (which would reach the client as INTERNAL)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from batchgate.errors import InvalidArgument
from batchgate.jobspec import Defaults, resolve, to_job
from batchgate.units import parse_bytes
from batchgate.v1 import batchgate_pb2 as pb

FIELDS = ("command", "cores", "memory", "disk", "wall_time_seconds", "environment", "accelerators", "name")

specs = st.builds(
    pb.JobSpec,
    command=st.text(max_size=40),
    name=st.text(max_size=10),
    cores=st.floats(allow_nan=True, allow_infinity=True),
    memory=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    disk=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    wall_time_seconds=st.floats(allow_nan=True, allow_infinity=True),
    environment=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4),
    accelerators=st.lists(st.builds(pb.Accelerator, count=st.integers(-3, 3), kind=st.sampled_from(["", "gpu", "tpu"])), max_size=2),
)


@given(specs)
def test_a_spec_is_accepted_or_its_field_is_named(spec: pb.JobSpec) -> None:
    try:
        resolved = resolve(spec, defaults=Defaults(), environment={"FROM_SET_ENV": "1"}, options_field=None)
    except InvalidArgument as refused:
        assert refused.field.split("[")[0].split(".")[0] in FIELDS
        return
    job = to_job(1, resolved)
    assert job.command.strip() and "\0" not in job.command
    assert math.isfinite(job.cores) and job.cores >= 0 and job.memory >= 0 and job.disk >= 0
    assert job.environment["FROM_SET_ENV"] == spec.environment.get("FROM_SET_ENV", "1")
    assert all("=" not in name and name for name in job.environment)


@given(st.integers(min_value=0, max_value=2**40), st.sampled_from(["", "K", "Ki", "KiB", "M", "Mi", "G", "GiB"]))
def test_sizes_read_binary_suffixes(number: int, suffix: str) -> None:
    power = {"": 0, "K": 1, "M": 2, "G": 3}[suffix[:1]]
    assert parse_bytes(f"{number}{suffix}") == number * 1024**power
