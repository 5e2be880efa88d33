"""A soak of the whole system: many clients (threads and processes) issue jobs through a gateway
to a local and a Slurm backend, kill some, set variables and follow their streams, while the
gateway and the backends are kill -9'd and restarted at random moments. Afterwards every issued
job must be accounted for exactly once, and a calm phase shows whether any service keeps
growing (file descriptors, threads, memory, zombie children).

Used by tests/robustness/test_soak.py (small, in CI) and bench/soak.py (long, with figures).
(A module of its own, not conftest.py: every test directory has a conftest module.)
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil
from harness import RunningService, start_service

from batchgate.client import BatchgateClient, job_spec
from batchgate.errors import AcquisitionTimeoutException, BackendUnavailable, BatchgateError, ServiceError

# What a client issues, with how often: quick successes and failures, short sleepers, and long
# sleepers that the client kills.
MIX = (("true", 0.45), ("exit 3", 0.15), ("sleep 0.5", 0.25), ("sleep 60", 0.15))
LONG = "sleep 60"
TRANSIENT_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def transient(error: BatchgateError) -> bool:
    """A service restarting, or a gateway's backend restarting: the call may be made again (any
    other error, INTERNAL above all, fails the soak)."""
    return isinstance(error, BackendUnavailable | AcquisitionTimeoutException) or (
        isinstance(error, ServiceError) and error.status_code in TRANSIENT_CODES
    )


@dataclass
class ClientPlan:
    address: str
    job_set: str
    jobs: int
    backends: tuple[str, ...]
    seed: int
    settle_seconds: float


@dataclass
class ClientResult:
    job_set: str
    issued: list[int] = field(default_factory=list)
    killed: set[int] = field(default_factory=set)
    updates: list[tuple[int, int]] = field(default_factory=list)  # (sequence, job id)
    set_envs: int = 0
    unaccounted: list[int] = field(default_factory=list)  # not killed, no update within the wait


def retrying(call: Callable[[], object], deadline: float) -> object:
    """Call until it succeeds; a service that is restarting answers UNAVAILABLE or not at all."""
    while True:
        try:
            return call()
        except BatchgateError as error:
            if not transient(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def run_client(plan: ClientPlan) -> ClientResult:
    """One workflow: issue, kill and SetEnv through one client, follow the updates with another."""
    chooser = random.Random(plan.seed)
    result = ClientResult(plan.job_set)
    updates: list[tuple[int, int]] = result.updates
    stop_reading = threading.Event()

    def read() -> None:
        with BatchgateClient(plan.address, job_set=plan.job_set, timeout=120) as reader:
            while not stop_reading.is_set():
                update = reader.get_updated_job(max_wait=0.5)
                if update is not None:
                    updates.append((update.sequence, update.job_id))

    reader = threading.Thread(target=read, name=f"reader-{plan.job_set}", daemon=True)
    reader.start()
    deadline = time.monotonic() + 600
    with BatchgateClient(plan.address, job_set=plan.job_set, timeout=120) as client:
        for number in range(plan.jobs):
            command = chooser.choices([command for command, _ in MIX], [weight for _, weight in MIX])[0]
            spec = job_spec(command, cores=0.1, memory="16M", disk="1M", backend=chooser.choice(plan.backends),
                            request_key=f"{plan.job_set}-{number}")  # fmt: skip
            job_id = int(retrying(lambda spec=spec: client.issue(spec), deadline))  # type: ignore[arg-type]
            result.issued.append(job_id)
            if command == LONG:
                retrying(lambda job_id=job_id: client.kill([job_id]), deadline)
                result.killed.add(job_id)
            if chooser.random() < 0.05:
                value = uuid.uuid4().hex
                retrying(lambda value=value: client.set_env("SOAK_VALUE", value), deadline)
                result.set_envs += 1
    wanted = set(result.issued) - result.killed
    wait_until = time.monotonic() + 180
    while not wanted <= {job_id for _, job_id in updates} and time.monotonic() < wait_until:
        time.sleep(0.2)
    time.sleep(plan.settle_seconds)  # anything reported twice would arrive meanwhile
    stop_reading.set()
    reader.join(timeout=10)
    result.unaccounted = sorted(wanted - {job_id for _, job_id in updates})
    return result


@dataclass
class ServiceSample:
    rss: int
    fds: int
    threads: int
    zombies: int


def sample(service: RunningService) -> ServiceSample:
    process = psutil.Process(service.process.pid)
    with process.oneshot():
        zombies = sum(1 for child in process.children() if child.status() == psutil.STATUS_ZOMBIE)
        return ServiceSample(process.memory_info().rss, process.num_fds(), process.num_threads(), zombies)


class Deployment:
    """A gateway in front of a local backend and, optionally, a Slurm one, on fixed addresses so
    that each can be kill -9'd and started again where its clients expect it."""

    def __init__(self, root: Path, *, slurm: bool) -> None:
        self.services: dict[str, RunningService] = {}
        self.services["local"] = start_service("local", root / "local", "--cores", "2", "--memory", "8G", "--disk", "100G", "--kill-grace", "1")
        backends = [f"local={self.services['local'].address}"]
        if slurm:
            self.services["slurm"] = start_service("slurm", root / "slurm", "--slurm-poll-interval", "0.3")
            backends.append(f"slurm={self.services['slurm'].address}")
        self.services["gateway"] = start_service("gateway", root / "gateway", "--backends", ",".join(backends))
        self.peaks: dict[str, ServiceSample] = {}

    @property
    def address(self) -> str:
        return self.services["gateway"].address

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(name for name in self.services if name != "gateway")

    def crash_and_restart(self, name: str) -> None:
        self.services[name].kill()
        self.services[name] = self.services[name].restart()

    def record_peaks(self) -> None:
        for name, service in self.services.items():
            now = sample(service)
            peak = self.peaks.get(name)
            if peak is None:
                self.peaks[name] = now
            else:
                self.peaks[name] = ServiceSample(max(peak.rss, now.rss), max(peak.fds, now.fds), max(peak.threads, now.threads), max(peak.zombies, now.zombies))

    def close(self) -> None:
        for service in reversed(list(self.services.values())):
            service.kill()


@dataclass
class SoakReport:
    clients: int
    jobs: int
    kills: int
    set_envs: int
    faults: list[str]
    seconds: float
    lost: list[int]  # issued, not killed, never reported
    duplicated: list[int]  # reported more than once
    strangers: list[int]  # reported to a job set that never issued them
    out_of_order: int  # stream deliveries whose sequence did not rise
    ids_unique: bool
    peaks: dict[str, ServiceSample]
    growth: dict[str, tuple[ServiceSample, ServiceSample]]  # per service: after calm phase 1, after calm phase 2

    def lines(self) -> list[str]:
        lines = [
            f"clients {self.clients} (threads and processes), jobs {self.jobs}, kills {self.kills}, "
            f"SetEnv {self.set_envs}, faults {len(self.faults)} ({', '.join(self.faults) or 'none'}), {self.seconds:.0f} s",
            f"jobs lost {len(self.lost)}, updates duplicated {len(self.duplicated)}, delivered to the wrong job set "
            f"{len(self.strangers)}, out of order {self.out_of_order}, ids unique {self.ids_unique}",
            f"{'service':>8} {'peak RSS':>10} {'peak fds':>9} {'threads':>8}   calm phase 1 -> 2: RSS, fds, threads, zombies",
        ]
        for name, peak in self.peaks.items():
            before, after = self.growth[name]
            lines.append(
                f"{name:>8} {peak.rss / 2**20:>8.1f} M {peak.fds:>9} {peak.threads:>8}   "
                f"{before.rss / 2**20:.1f} -> {after.rss / 2**20:.1f} M, {before.fds} -> {after.fds}, "
                f"{before.threads} -> {after.threads}, {before.zombies} -> {after.zombies}"
            )
        return lines


def _phase(deployment: Deployment, plans: list[ClientPlan], processes: int, on_the_way: Callable[[], None]) -> list[ClientResult]:
    """Run the plans at once: the first `processes` in processes of their own, the rest in threads;
    `on_the_way` runs meanwhile (faults, sampling)."""
    context = multiprocessing.get_context("spawn")
    results: list[ClientResult] = []
    lock = threading.Lock()

    def in_thread(plan: ClientPlan) -> None:
        outcome = run_client(plan)
        with lock:
            results.append(outcome)

    with context.Pool(processes) if processes else _no_pool() as pool:
        pending = pool.map_async(run_client, plans[:processes]) if pool else None
        threads = [threading.Thread(target=in_thread, args=(plan,)) for plan in plans[processes:]]
        for thread in threads:
            thread.start()
        on_the_way()
        for thread in threads:
            thread.join()
        if pending is not None:
            results.extend(pending.get(timeout=900))
    return results


@contextmanager
def _no_pool() -> Iterator[None]:
    yield None


def soak(root: Path, *, clients: int, jobs_per_client: int, faults: int, slurm: bool, processes: int, seed: int = 1) -> SoakReport:
    chooser = random.Random(seed)
    deployment = Deployment(root, slurm=slurm)
    started = time.monotonic()
    try:
        plans = [
            ClientPlan(deployment.address, f"soak-{index}", jobs_per_client, deployment.backends, seed * 1000 + index, 2.0)
            for index in range(clients)
        ]
        injected: list[str] = []
        done = threading.Event()

        def inject_faults() -> None:
            for _ in range(faults):
                if done.wait(chooser.uniform(2.0, 6.0)):
                    return
                name = chooser.choice(list(deployment.services))
                deployment.crash_and_restart(name)
                injected.append(name)
            deployment.record_peaks()

        def while_loaded() -> None:
            fault_thread = threading.Thread(target=inject_faults, daemon=True)
            fault_thread.start()
            fault_thread.join()

        results = _phase(deployment, plans, processes, while_loaded)
        done.set()

        # Calm phases, no faults, the same processes: what a service holds must not keep growing.
        growth_samples: list[dict[str, ServiceSample]] = []
        for phase in range(2):
            calm = [
                ClientPlan(deployment.address, f"calm-{phase}-{index}", jobs_per_client, deployment.backends, seed * 7 + index, 0.5)
                for index in range(clients)
            ]
            results += _phase(deployment, calm, 0, deployment.record_peaks)
            time.sleep(1.0)
            growth_samples.append({name: sample(service) for name, service in deployment.services.items()})
        deployment.record_peaks()
        seconds = time.monotonic() - started
    finally:
        deployment.close()

    every_update = Counter(job_id for result in results for _, job_id in result.updates)
    issued_ids = [job_id for result in results for job_id in result.issued]
    own = {job_id: result.job_set for result in results for job_id in result.issued}
    strangers = [job_id for result in results for _, job_id in result.updates if own.get(job_id) != result.job_set]
    out_of_order = sum(
        1 for result in results for (before, _), (after, _) in zip(result.updates, result.updates[1:], strict=False) if after <= before
    )
    return SoakReport(
        clients=clients,
        jobs=len(issued_ids),
        kills=sum(len(result.killed) for result in results),
        set_envs=sum(result.set_envs for result in results),
        faults=injected,
        seconds=seconds,
        lost=[job_id for result in results for job_id in result.unaccounted],
        duplicated=sorted(job_id for job_id, count in every_update.items() if count > 1),
        strangers=strangers,
        out_of_order=out_of_order,
        # Request keys make a retried issue return the first id: each (client, number) one id.
        ids_unique=len(set(issued_ids)) == len(issued_ids),
        peaks=deployment.peaks,
        growth={name: (growth_samples[0][name], growth_samples[1][name]) for name in growth_samples[0]},
    )
