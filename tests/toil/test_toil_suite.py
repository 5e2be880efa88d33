"""Toil's own batch-system test suite (toil.test.batchSystems), run against the plugin.

These are the checks every batch system shipped with Toil passes: jobs run, are listed while
issued and running, killed jobs vanish without an update, wall time is reported, setEnv and the
per-job environment reach the job (and only it), and check_resource_request refuses what cannot
run, through Toil's limits and the backend's (CheckJob).
"""

from __future__ import annotations

import pytest
from toil.test.batchSystems.batchSystemTest import hidden, numCores

from toil_batch_system_batchgate.batch_system import BatchgateBatchSystem


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
