"""Toil's AbstractBatchSystem over a batchgate service.

Ids are the service's own. A gateway is shared (by other workflows, and by an earlier leader of
this same workflow after a --restart), so this class remembers the ids it issued and answers
Toil only about those: Toil's leader stops with "An unexpected job is still running" when a
listing holds a job it did not issue, and no workflow may kill or reap another's jobs.
"""

from __future__ import annotations

import logging
import threading
import time
from argparse import ArgumentParser, _ArgumentGroup
from collections.abc import Iterable
from typing import Any, ContextManager

from toil.batchSystems import DeadlockException
from toil.batchSystems.abstractBatchSystem import BatchSystemSupport, UpdatedBatchJobInfo
from toil.batchSystems.cleanup_support import WorkerCleanupContext
from toil.batchSystems.options import OptionSetter
from toil.common import Config
from toil.job import JobDescription, Requirer

from batchgate import errors
from batchgate.client import BatchgateClient

from . import options, translate

log = logging.getLogger(__name__)

# CheckJob judges resources only; it needs some command, which it never runs.
CHECK_COMMAND = "true"


class BatchgateBatchSystem(BatchSystemSupport):
    """Runs Toil's jobs as batchgate jobs, in one job set per workflow."""

    @classmethod
    def supportsAutoDeployment(cls) -> bool:
        # The backend runs jobs wherever it will, with no way to ship the user script along: as
        # with Toil's Slurm, the workflow's code must be at the same path on every worker.
        return False

    @classmethod
    def supportsWorkerCleanup(cls) -> bool:
        return True

    def getWorkerContexts(self) -> list[ContextManager[Any]]:
        # The last worker of this workflow to leave a node cleans it up itself, so no backend
        # has to know Toil's directories.
        return [*super().getWorkerContexts(), WorkerCleanupContext(self.workerCleanupInfo)]

    @classmethod
    def add_options(cls, parser: ArgumentParser | _ArgumentGroup) -> None:
        options.add_options(parser)

    @classmethod
    def setOptions(cls, setOption: OptionSetter) -> None:
        options.set_options(setOption)

    def __init__(self, config: Config, maxCores: float, maxMemory: float, maxDisk: int) -> None:
        super().__init__(config, maxCores, maxMemory, maxDisk)
        settings = options.Settings.from_config(config)
        self.backend = settings.backend
        self.wall_time_round_up = settings.wall_time_round_up
        self.client = BatchgateClient(
            settings.address,
            job_set=settings.job_set,
            tls_ca=settings.tls_ca,
            tls_cert=settings.tls_cert,
            tls_key=settings.tls_key,
            token=settings.token,
        )
        self._issued: set[int] = set()  # issued by this instance, not yet reported or killed
        self._issued_lock = threading.Lock()
        self._deadlocked_since: float | None = None  # since when the service says nothing can start

    def issueBatchJob(
        self, command: str, job_desc: JobDescription, job_environment: dict[str, str] | None = None
    ) -> int:
        super().check_resource_request(job_desc)  # Toil's own --maxCores, --maxMemory, --maxDisk
        spec = translate.spec_for(
            command,
            job_desc,
            name=str(job_desc),
            environment=job_environment or {},  # setEnv's are the service's, for this job set
            backend=self.backend,
            wall_time_round_up=self.wall_time_round_up,
        )
        try:
            job_id = self.client.issue(spec)
        except errors.InsufficientSystemResources as refusal:
            raise translate.insufficient_resources(
                job_desc,
                resource=refusal.resource,
                available=refusal.available,
                backend=refusal.batch_system,
                message=refusal.message,
            ) from refusal
        with self._issued_lock:
            self._issued.add(job_id)
        return job_id

    def setEnv(self, name: str, value: str | None = None) -> None:
        """Toil's setEnv, kept by the service for this workflow's job set alone."""
        super().setEnv(name, value)  # reads the leader's own value when none is given
        self.client.set_env(name, self.environment[name])

    def check_resource_request(self, requirer: Requirer) -> None:
        """Refuse what Toil's configuration forbids, then ask the service (CheckJob) whether any
        backend could ever run it."""
        super().check_resource_request(requirer)
        spec = translate.spec_for(
            CHECK_COMMAND,
            requirer,
            name=str(requirer),
            environment={},
            backend=self.backend,
            wall_time_round_up=self.wall_time_round_up,
        )
        verdict = self.client.check(spec)
        if verdict.accepted:
            return
        if not verdict.refusals:
            raise RuntimeError(f"batchgate refused {requirer}: {verdict.message}")
        first = verdict.refusals[0]
        raise translate.insufficient_resources(
            requirer,
            resource=first.resource,
            available=first.available,
            backend=first.backend,
            message="; ".join(refusal.message for refusal in verdict.refusals),
        )

    def _check_accelerator_request(self, requirer: Requirer) -> None:
        """Accelerators are the backend's to judge (at issue, or by CheckJob), not Toil's config."""

    def killBatchJobs(self, jobIDs: list[int]) -> None:
        with self._issued_lock:
            ours = self._issued.intersection(jobIDs)
            self._issued.difference_update(ours)
        if ours:
            self.client.kill(sorted(ours))

    def getIssuedBatchJobIDs(self) -> list[int]:
        return self._ours(self.client.issued_job_ids())

    def getRunningBatchJobIDs(self) -> dict[int, float]:
        running = self.client.running_job_ids()
        return {job_id: running[job_id] for job_id in self._ours(running)}

    def getUpdatedBatchJob(self, maxWait: int) -> UpdatedBatchJobInfo | None:
        deadline = time.monotonic() + maxWait
        while True:
            try:
                update = self.client.get_updated_job(max(0.0, deadline - time.monotonic()))
            except errors.DeadlockException as deadlock:
                self._raise_if_deadlocked_too_long(deadlock)
                return None
            self._deadlocked_since = None
            if update is None:
                return None
            with self._issued_lock:
                ours = update.job_id in self._issued
                self._issued.discard(update.job_id)
            if ours:
                return translate.update_info(update)
            log.debug("skipping the update of batchgate job %d, which this leader did not issue", update.job_id)

    def _raise_if_deadlocked_too_long(self, deadlock: errors.DeadlockException) -> None:
        """Toil's DeadlockException once the service has said for --deadlockWait seconds that
        its queued jobs can never start: a node down for a moment must not end the workflow."""
        now = time.monotonic()
        if self._deadlocked_since is None:
            log.warning("%s; the workflow stops if this lasts %d s (--deadlockWait)", deadlock.message, self.config.deadlockWait)
            self._deadlocked_since = now
        if now - self._deadlocked_since >= self.config.deadlockWait:
            raise DeadlockException(deadlock.message) from deadlock

    def getSchedulingStatusMessage(self) -> str | None:
        return self.client.scheduling_status() or None

    def shutdown(self) -> None:
        with self._issued_lock:
            leftover = sorted(self._issued)
            self._issued.clear()
        try:
            if leftover:
                log.info("killing %d batchgate job(s) still issued at shutdown", len(leftover))
                self.client.kill(leftover)
        finally:
            self.client.close()

    def _ours(self, job_ids: Iterable[int]) -> list[int]:
        with self._issued_lock:
            return [job_id for job_id in job_ids if job_id in self._issued]
