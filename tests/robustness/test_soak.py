"""The soak, small enough for CI: real processes, real Slurm, real kill -9s (see soak.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "slurm"))
from slurm_cluster import ensure_slurm  # noqa: E402
from soak import soak  # noqa: E402

MIB = 2**20


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_under_load_and_crashes_every_job_is_accounted_for_once_and_nothing_keeps_growing(tmp_path: Path) -> None:
    ensure_slurm()
    report = soak(tmp_path, clients=6, jobs_per_client=40, faults=4, slurm=True, processes=2, seed=7)
    print("\n".join(report.lines()))

    assert len(report.faults) == 4
    assert report.lost == [], "issued jobs never reported"
    assert report.duplicated == [], "jobs reported more than once"
    assert report.strangers == [] and report.out_of_order == 0
    assert report.ids_unique
    for name, (before, after) in report.growth.items():
        assert after.zombies == 0, name
        assert after.fds <= before.fds + 8, f"{name} holds more file descriptors: {before.fds} -> {after.fds}"
        assert after.threads <= before.threads + 8, f"{name} runs more threads: {before.threads} -> {after.threads}"
        assert after.rss <= before.rss + 32 * MIB, f"{name} keeps growing: {before.rss / MIB:.0f} -> {after.rss / MIB:.0f} MiB"
