"""Toil's own SingleMachineBatchSystem driven directly, as the baseline batchgate replaces."""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import psutil
from toil.batchSystems.singleMachine import SingleMachineBatchSystem
from toil.common import Config
from toil.job import Job, JobDescription


def single_machine_rate(command: str, jobs: int, *, cores: float) -> float:
    """Jobs per second issuing `jobs` copies of `command` (0.1 cores each) and collecting every
    update, with `cores` in all."""
    with tempfile.TemporaryDirectory() as work:
        config = Config()
        config.setOptions(Job.Runner.getDefaultArgumentParser().parse_args([str(Path(work) / "jobstore"), "--workDir", work]))
        config.workflowID = str(uuid.uuid4())  # set by Toil's leader in a real run
        system = SingleMachineBatchSystem(config, maxCores=cores, maxMemory=psutil.virtual_memory().total, maxDisk=psutil.disk_usage(work).total)
        try:
            requirements = {"cores": 0.1, "memory": 1024**2, "disk": 1024**2, "preemptible": False}
            started = time.perf_counter()
            for _ in range(jobs):
                description = JobDescription(requirements=requirements, jobName="bench")
                description.assignConfig(config)  # what the job does not name comes from the config
                system.issueBatchJob(command, description)
            for _ in range(jobs):
                while system.getUpdatedBatchJob(maxWait=10) is None:
                    pass
            return jobs / (time.perf_counter() - started)
        finally:
            system.shutdown()
