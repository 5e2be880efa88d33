"""What tokens and TLS cost a call: one local backend served four ways in the same run, plain,
with a tokens file, with TLS, and with both, as ratios against plain.

    .venv/bin/python bench/security_cost.py [--calls 2000] [--rounds 3]

Each round starts the four services afresh and measures, in rotating order, unary calls a second
from 8 client threads (ListIssuedJobs of the tenant's own job set: the smallest call that is
authorized) and CheckJob of a small job in that job set (a spec validated, nothing run). The figures come from one machine, where the
clients and the service share the cores: compare the ratios, not the rates.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE.parent / "tests" / "security")]
from credentials import make_pki, write_tokens  # noqa: E402
from harness import RunningService, spec, start_service  # noqa: E402

from batchgate.auth import Tenant  # noqa: E402
from batchgate.client.batch_client import open_channel  # noqa: E402
from batchgate.v1 import batchgate_pb2 as pb  # noqa: E402
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc  # noqa: E402

THREADS = 8
WAYS = ("plain", "tokens", "TLS", "TLS + tokens")


def calls_per_second(stubs: list[pb_grpc.BatchSystemStub], calls: int, one_call: Callable[[pb_grpc.BatchSystemStub], object]) -> float:
    per_thread = calls // len(stubs)

    def run(stub: pb_grpc.BatchSystemStub) -> None:
        for _ in range(per_thread):
            one_call(stub)

    started = time.perf_counter()
    with ThreadPoolExecutor(len(stubs)) as pool:
        list(pool.map(run, stubs))
    return per_thread * len(stubs) / (time.perf_counter() - started)


def list_own(stub: pb_grpc.BatchSystemStub) -> object:
    return stub.ListIssuedJobs(pb.ListIssuedJobsRequest(job_set="bench"))


def check(stub: pb_grpc.BatchSystemStub) -> object:
    return stub.CheckJob(pb.CheckJobRequest(spec=spec("true", job_set="bench")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls of each kind per way and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    subprocess.run(["openssl", "version"], check=True, capture_output=True)
    rates: dict[str, dict[str, list[float]]] = {way: {"list": [], "check": []} for way in WAYS}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "pki").mkdir()
        pki = make_pki(root / "pki")
        tokens = write_tokens(root / "tokens", (Tenant("bench", ("bench",)),))
        tls = ["--tls-cert", pki.path("server.pem"), "--tls-key", pki.path("server.key")]
        flags = {
            "plain": [],
            "tokens": ["--tokens-file", str(tokens.path)],
            "TLS": tls,
            "TLS + tokens": [*tls, "--tokens-file", str(tokens.path)],
        }
        for round_number in range(args.rounds):
            order = WAYS[round_number % len(WAYS) :] + WAYS[: round_number % len(WAYS)]
            for way in order:
                service: RunningService = start_service(
                    "local", root / f"r{round_number}-{way.replace(' ', '')}", "--cores", "100", "--memory", "1T", *flags[way]
                )
                try:
                    channel_options = {
                        "tls_ca": pki.path("service-ca.pem") if "TLS" in way else None,
                        "token": tokens["bench"] if "tokens" in way else None,
                    }
                    channels = [open_channel(service.address, **channel_options) for _ in range(THREADS)]
                    stubs = [pb_grpc.BatchSystemStub(channel) for channel in channels]
                    calls_per_second(stubs, THREADS * 50, list_own)  # warm up
                    rates[way]["list"].append(calls_per_second(stubs, args.calls, list_own))
                    rates[way]["check"].append(calls_per_second(stubs, args.calls, check))
                    for channel in channels:
                        channel.close()
                finally:
                    service.kill()
    print(f"security cost: one local backend, {THREADS} client threads, {args.rounds} rounds, {args.calls} calls a round")
    print(f"  {'':14} {'ListIssuedJobs':>16} {'ratio':>6}   {'CheckJob':>12} {'ratio':>6}")
    base_list = statistics.median(rates["plain"]["list"])
    base_check = statistics.median(rates["plain"]["check"])
    for way in WAYS:
        listed = statistics.median(rates[way]["list"])
        checked = statistics.median(rates[way]["check"])
        print(f"  {way:14} {listed:12.0f} c/s {listed / base_list:6.2f}x   {checked:8.0f} c/s {checked / base_check:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
