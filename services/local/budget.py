"""What this machine lends to jobs: cores (in tenths), memory, disk and GPUs, and who holds what."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from batchgate.driver import AcceleratorRequest, Job
from batchgate.errors import format_bytes

CORE_STEP = 10  # cores are budgeted in tenths: 0.1 is the smallest share a job gets


def core_tenths(cores: float) -> int:
    """A request in tenths of a core, rounded up, at least one tenth."""
    return max(1, math.ceil(round(cores * CORE_STEP, 6)))


@dataclass(frozen=True)
class Gpu:
    index: str  # as CUDA_VISIBLE_DEVICES names it
    model: str
    brand: str = "nvidia"
    api: str = "cuda"

    def offers(self, request: AcceleratorRequest) -> bool:
        return request.satisfied_by(AcceleratorRequest(count=1, kind="gpu", model=self.model, brand=self.brand, api=self.api))


@dataclass(frozen=True)
class Grant:
    tenths: int
    memory: int
    disk: int
    gpus: tuple[Gpu, ...]


class Budget:
    """Totals and what is free. Not thread-safe: the driver calls it under its own lock."""

    def __init__(self, *, cores: float, memory: int, disk: int, gpus: Sequence[Gpu]) -> None:
        self.total_tenths = int(round(cores * CORE_STEP))
        self.total_memory = memory
        self.total_disk = disk
        self.gpus = tuple(gpus)
        self.free_tenths = self.total_tenths
        self.free_memory = memory
        self.free_disk = disk
        self.free_gpus: list[Gpu] = list(gpus)

    def can_fit(self, job: Job) -> bool:
        """Whether `job` fits in what is free now."""
        return (
            core_tenths(job.cores) <= self.free_tenths
            and job.memory <= self.free_memory
            and job.disk <= self.free_disk
            and (not job.accelerators or self._pick_gpus(job.accelerators) is not None)
        )

    def acquire(self, job: Job) -> Grant | None:
        """Take what `job` needs, or nothing (None) if it does not fit now."""
        if not self.can_fit(job):
            return None
        tenths = core_tenths(job.cores)
        gpus = self._pick_gpus(job.accelerators)
        assert gpus is not None
        self.free_tenths -= tenths
        self.free_memory -= job.memory
        self.free_disk -= job.disk
        for gpu in gpus:
            self.free_gpus.remove(gpu)
        return Grant(tenths, job.memory, job.disk, gpus)

    def release(self, grant: Grant) -> None:
        self.free_tenths += grant.tenths
        self.free_memory += grant.memory
        self.free_disk += grant.disk
        self.free_gpus.extend(grant.gpus)

    def _pick_gpus(self, requests: Sequence[AcceleratorRequest], among: Sequence[Gpu] | None = None) -> tuple[Gpu, ...] | None:
        """GPUs for `requests` from `among` (default: the free ones), or None if they cannot be had."""
        picked: list[Gpu] = []
        for request in requests:
            matching = [gpu for gpu in (self.free_gpus if among is None else among) if gpu not in picked and gpu.offers(request)]
            if len(matching) < request.count:
                return None
            picked.extend(matching[: request.count])
        return tuple(picked)

    def fits_ever(self, job: Job) -> bool:
        """Whether `job` fits the totals (with nothing else running)."""
        return (
            core_tenths(job.cores) <= self.total_tenths
            and job.memory <= self.total_memory
            and job.disk <= self.total_disk
            and self._pick_gpus(job.accelerators, self.gpus) is not None
        )

    def shortage(self, job: Job) -> str | None:
        """What `job` waits for now, in words (None if it fits)."""
        tenths = core_tenths(job.cores)
        if tenths > self.free_tenths:
            return f"cores: {self.free_tenths / CORE_STEP:g} free, {tenths / CORE_STEP:g} asked"
        if job.memory > self.free_memory:
            return f"memory: {format_bytes(self.free_memory)} free, {format_bytes(job.memory)} asked"
        if job.disk > self.free_disk:
            return f"disk: {format_bytes(self.free_disk)} free, {format_bytes(job.disk)} asked"
        if self._pick_gpus(job.accelerators) is None:
            return f"accelerators: {len(self.free_gpus)} GPU(s) free"
        return None
