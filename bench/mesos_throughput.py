"""The Mesos backend's throughput against the local backend on the same budget, as a ratio, and
the offer-to-launch latency.

    .venv/bin/python bench/mesos_throughput.py [--jobs 1000] [--rounds 3]

Each round starts the tests' own Mesos master (tests/mesos/fake_master.py, in this process) with
4 simulated agents of 1 core each, `batchgate serve mesos` in front of it, and a local backend
with the same 4 cores; warms both; then measures, in alternating order, the time from the first
issue (IssueJobs batches of 200) to the last update for `--jobs` trivial jobs of 0.1 cores.
Offer-to-launch is the master's own measure, per task: from the OFFERS event it was launched on
being made to the ACCEPT that launches it. The master allocates every 50 ms (Mesos'
--allocation_interval, whose default is 1 s). The master is Python and shares the 2 cores with the service and the jobs, so
its cost is in the Mesos figure: compare ratios, not rates.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests"), str(HERE.parent / "tests" / "mesos")]
from fake_master import AgentSpec  # noqa: E402
from gateway_hop import warm  # noqa: E402
from harness import start_service  # noqa: E402
from local_throughput import batched_rate  # noqa: E402
from mesos_cluster import start_master, start_mesos_service  # noqa: E402

AGENTS = 4
CORES_PER_AGENT = 1


def one_round(args: argparse.Namespace, state: Path, mesos_first: bool) -> tuple[float, float, list[float]]:
    """Jobs per second on the local and the Mesos backend, and the offer-to-launch latencies."""
    quiet = ("--log-level", "WARNING")
    agents = [AgentSpec(f"agent-{index}.bench", cpus=CORES_PER_AGENT, mem=2048, disk=10240) for index in range(AGENTS)]
    master = start_master(state / "master", agents, heartbeat_interval=15.0, resend_interval=10.0)
    mesos = start_mesos_service(state / "mesos", master, *quiet)
    local = start_service("local", state / "local", "--cores", str(AGENTS * CORES_PER_AGENT), "--memory", "8G", *quiet)
    try:
        stubs = {"local": local.stub(), "mesos": mesos.stub()}
        order = ("mesos", "local") if mesos_first else ("local", "mesos")
        for name in order:
            warm(stubs[name], 100)
        rates: dict[str, float] = {}
        for name in order:
            if name == "mesos":
                master.offer_to_launch.clear()
            rates[name] = batched_rate(stubs[name], args.jobs, args.batch)
        return rates["local"], rates["mesos"], list(master.offer_to_launch)
    finally:
        mesos.stop()
        local.stop()
        master.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    rounds = []
    for index in range(args.rounds):
        with tempfile.TemporaryDirectory() as state:
            rounds.append(one_round(args, Path(state), mesos_first=index % 2 == 1))
    local_rates = [local for local, _, _ in rounds]
    mesos_rates = [mesos for _, mesos, _ in rounds]
    ratios = [mesos / local for local, mesos, _ in rounds]
    waits = sorted(wait for _, _, latencies in rounds for wait in latencies)
    p50, p99 = statistics.median(waits) * 1000, waits[max(0, int(len(waits) * 0.99) - 1)] * 1000

    local_label = f"local backend, {AGENTS * CORES_PER_AGENT} cores"
    mesos_label = f"mesos backend, {AGENTS} agents x {CORES_PER_AGENT} core"
    jobs = f"{args.jobs} trivial jobs ('true', 0.1 cores) x {args.rounds} rounds"
    print(f"mesos backend: {jobs}, first issue -> last update, {os.cpu_count()} cores")
    print(f"  {local_label:34} {statistics.median(local_rates):6.0f} jobs/s")
    print(
        f"  {mesos_label:34} {statistics.median(mesos_rates):6.0f} jobs/s  "
        f"{statistics.median(ratios):.2f}x local (rounds {min(ratios):.2f}-{max(ratios):.2f})"
    )
    print(f"  offer -> launch (OFFERS sent -> its ACCEPT received): median {p50:.2f} ms, p99 {p99:.2f} ms ({len(waits)} tasks)")


if __name__ == "__main__":
    main()
