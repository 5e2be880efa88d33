"""Toil's own batch-system test suite (toil.test.batchSystems), run against the plugin.

These are the checks every batch system shipped with Toil passes: jobs run, are listed while
issued and running, killed jobs vanish without an update, wall time is reported, setEnv and the
per-job environment reach the job (and only it), and check_resource_request refuses what cannot
run, through Toil's limits and the backend's (CheckJob).
"""

from __future__ import annotations

import warnings

import pytest

from toil_batch_system_batchgate.batch_system import BatchgateBatchSystem

with warnings.catch_warnings():
    # The module marks Toil's own tests (mesos, slurm, ...) with marks this project has no use for.
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    from toil.test.batchSystems.batchSystemTest import hidden, numCores


class TestToilSuiteOnBatchgate(hidden.AbstractBatchSystemTest):
    batchgate_address: str

    @pytest.fixture(autouse=True)
    def _service(self, batchgate_address: str) -> None:
        type(self).batchgate_address = batchgate_address

    def supportsWallTime(self) -> bool:
        return True

    def createBatchSystem(self) -> BatchgateBatchSystem:
        self.config.batchgate_address = self.batchgate_address
        # The limits Toil's suite gives every batch system it tests.
        return BatchgateBatchSystem(config=self.config, maxCores=numCores, maxMemory=int(1e9), maxDisk=2001)
