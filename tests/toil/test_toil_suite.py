"""Toil's own batch-system test suite (toil.test.batchSystems), run against the plugin.

These are the checks every batch system shipped with Toil passes: jobs run, are listed while
issued and running, killed jobs vanish without an update, wall time is reported, setEnv and the
per-job environment reach the job (and only it), and check_resource_request refuses what cannot
run, through Toil's limits and the backend's (CheckJob).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from toil_services import running_batchgate

from toil_batch_system_batchgate.batch_system import BatchgateBatchSystem

with warnings.catch_warnings():
    # The module marks Toil's own tests (mesos, slurm, ...) with marks this project has no use for.
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    from toil.test.batchSystems.batchSystemTest import hidden, numCores


class ToilSuiteOnBatchgate(hidden.AbstractBatchSystemTest):
    __test__ = False  # run by the subclasses below, one per deployment
    deployment: str
    batchgate_address: str

    # unittest classes take no parametrized fixtures, hence a class per deployment.
    @pytest.fixture(autouse=True, scope="class")
    def _service(self, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
        with running_batchgate(self.deployment, tmp_path_factory.mktemp(self.deployment)) as address:
            request.cls.batchgate_address = address
            yield

    def supportsWallTime(self) -> bool:
        return True

    def createBatchSystem(self) -> BatchgateBatchSystem:
        self.config.batchgate_address = self.batchgate_address
        # The limits Toil's suite gives every batch system it tests.
        return BatchgateBatchSystem(config=self.config, maxCores=numCores, maxMemory=int(1e9), maxDisk=2001)


class TestToilSuiteOnALocalBackend(ToilSuiteOnBatchgate):
    __test__ = True
    deployment = "local"


class TestToilSuiteThroughTheGateway(ToilSuiteOnBatchgate):
    __test__ = True
    deployment = "gateway"
