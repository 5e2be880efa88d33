"""`batchgate up`: the whole system on this machine, as a new user first runs it: the local
backend and a gateway in front of it, as two child processes on localhost, stopped together.

    batchgate up [--listen 127.0.0.1:50051] [--state-dir var] [local backend flags, e.g. --cores 2]

Clients talk to the gateway (--listen). Flags `up` does not know go to the local backend
(`batchgate serve local --help` lists them). SIGTERM or SIGINT stops the gateway, then the
backend; `up` exits once both have, and stops the other if either ends by itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from batchgate import logs
from batchgate.config import add_option
from batchgate.server import _write_ready_file as write_ready_file

log = logging.getLogger("batchgate.up")

START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    ready_file: Path

    def address(self) -> str:
        return str(json.loads(self.ready_file.read_text())["address"])

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %g s; killing it", self.name, STOP_TIMEOUT)
            self.process.kill()
            return self.process.wait()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="batchgate up",
        description="Run the local backend and a gateway in front of it.",
        epilog="Other flags go to the local backend (e.g. --cores 2 --memory 4G; see `batchgate serve local --help`).",
    )
    add_option(parser, "--listen", default="127.0.0.1:50051", help="the gateway's gRPC address: the one clients use")
    add_option(parser, "--local-listen", default="127.0.0.1:50061", help="the local backend's gRPC address")
    add_option(parser, "--metrics-listen", default="127.0.0.1:51051", help="the gateway's Prometheus metrics address, or 'off'")
    add_option(parser, "--local-metrics-listen", default="127.0.0.1:51061", help="the local backend's metrics address, or 'off'")
    add_option(parser, "--state-dir", default="var", help="the services keep their stores in local/ and gateway/ below this")
    add_option(parser, "--ready-file", default="", help="write both addresses here (JSON) once both serve")
    add_option(parser, "--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (for all three processes)")
    args, local_args = parser.parse_known_args(argv)
    logs.setup(args.log_level)

    stop_requested = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stop_requested.set())

    state = Path(args.state_dir)
    common = ["--log-level", args.log_level]
    children: list[Child] = []
    try:
        local = _start("local", state, [*_addresses(args.local_listen, args.local_metrics_listen), *common, *local_args])
        children.append(local)
        if not _wait_ready(local, stop_requested):
            return _stop_all(children, failed=not stop_requested.is_set())
        backends = f"local={local.address()}"
        gateway = _start("gateway", state, [*_addresses(args.listen, args.metrics_listen), *common, "--backends", backends])
        children.insert(0, gateway)  # stopped first, so it never forwards to a backend gone
        if not _wait_ready(gateway, stop_requested):
            return _stop_all(children, failed=not stop_requested.is_set())
        log.info("batchgate is up: clients use %s (local backend on %s)", gateway.address(), local.address())
        if args.ready_file:
            pids = {"gateway": gateway.process.pid, "local": local.process.pid}
            ready = {"address": gateway.address(), "local_address": local.address(), "pid": os.getpid(), "pids": pids}
            write_ready_file(Path(args.ready_file), ready)
        while not stop_requested.wait(0.2):
            ended = [child for child in children if child.process.poll() is not None]
            if ended:
                log.error("%s exited with status %d; stopping the rest", ended[0].name, ended[0].process.returncode)
                return _stop_all(children, failed=True)
        return _stop_all(children, failed=False)
    except BaseException:
        _stop_all(children, failed=True)
        raise


def _start(name: str, state: Path, args: list[str]) -> Child:
    state_dir = state / name
    ready_file = state_dir / "ready.json"
    ready_file.unlink(missing_ok=True)
    # -P: not the working directory first on sys.path, where a source checkout would shadow the
    # installed package (whose mapped batchgate.gateway and batchgate.services it lacks).
    serve = [sys.executable, "-P", "-m", "batchgate.client.cli", "serve", name]
    return Child(
        name, subprocess.Popen([*serve, "--state-dir", str(state_dir), "--ready-file", str(ready_file), *args]), ready_file
    )


def _addresses(listen: str, metrics_listen: str) -> list[str]:
    return ["--listen", listen, "--metrics-listen", metrics_listen]


def _wait_ready(child: Child, stop_requested: threading.Event) -> bool:
    """Whether `child` came to serve (False: it exited, took too long, or we were told to stop)."""
    deadline = time.monotonic() + START_TIMEOUT
    while not child.ready_file.exists():
        if child.process.poll() is not None:
            log.error("%s exited with status %d before serving", child.name, child.process.returncode)
            return False
        if time.monotonic() > deadline:
            log.error("%s did not serve within %g s", child.name, START_TIMEOUT)
            return False
        if stop_requested.wait(0.05):
            return False
    return True


def _stop_all(children: list[Child], *, failed: bool) -> int:
    statuses = [child.stop() for child in children]
    return 1 if failed or any(statuses) else 0
