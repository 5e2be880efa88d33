"""The contract suite's LSF target: a real `batchgate serve lsf` in front of the fake LSF
(tests/lsf/fake). Registered in tests/contract/targets.py.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from lsf_cluster import FakeLsf, start_lsf  # noqa: E402
from targets import Target  # noqa: E402

from batchgate.v1 import batchgate_pb2 as pb  # noqa: E402


@contextlib.contextmanager
def lsf_target(tmp_path: Path) -> Iterator[Target]:
    fake = FakeLsf(tmp_path / "lsf-cluster")  # one host, 4 cores, 4 GiB; a -W minute lasts a second
    service = start_lsf(fake, tmp_path / "lsf")
    capabilities = service.stub().GetCapabilities(pb.GetCapabilitiesRequest())
    target = Target(
        "lsf",
        service,
        max_cores=capabilities.max_cores,
        max_memory=capabilities.max_memory,
        checks_working_directory=False,  # LSF says TERM_CWD_NOTEXIST, not the path: tests/lsf
    )
    try:
        yield target
    finally:
        target.close()
        fake.shutdown()
