"""The long soak: many clients issue through a gateway to a local and a Slurm backend while the
services are kill -9'd and restarted; then every job is accounted for and each service's growth
is measured over two calm phases (tests/robustness/soak.py does the work).

    .venv/bin/python bench/soak.py [--clients 16] [--jobs 200] [--faults 12] [--processes 4] [--no-slurm]

Prints clients, jobs, kills, faults injected, duration, jobs lost and updates duplicated (both
must be 0), and each service's peak RSS and file descriptors.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE.parent / "tests" / "robustness"), str(HERE.parent / "tests" / "slurm")]
from slurm_cluster import ensure_slurm  # noqa: E402
from soak import soak  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=200, help="jobs per client and phase")
    parser.add_argument("--faults", type=int, default=12, help="kill -9s of a service, at random moments")
    parser.add_argument("--processes", type=int, default=4, help="clients that run as processes of their own")
    parser.add_argument("--no-slurm", dest="slurm", action="store_false", help="a local backend alone behind the gateway")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.slurm:
        ensure_slurm()
    with tempfile.TemporaryDirectory(prefix="batchgate-soak-") as root:
        report = soak(
            Path(root), clients=args.clients, jobs_per_client=args.jobs, faults=args.faults,
            slurm=args.slurm, processes=args.processes, seed=args.seed,
        )  # fmt: skip
    print("\n".join(report.lines()))
    return 0 if not (report.lost or report.duplicated or report.strangers or report.out_of_order) and report.ids_unique else 1


if __name__ == "__main__":
    sys.exit(main())
