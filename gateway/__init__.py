"""The gateway: one BatchSystem address for every backend, one merged, resumable update stream.

    batchgate serve gateway --backends small=127.0.0.1:50061,big=127.0.0.1:50062 [--default-backend big]
    batchgate serve gateway --backends-file backends.conf      (one `NAME = HOST:PORT` a line)

A job goes to the backend its spec names, else to the first backend (in the order given) whose
capabilities fit it; see gateway/routing.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from batchgate import units
from batchgate.config import add_option
from batchgate.registry import ServiceDefinition

from .config import parse_backends, read_backends_file
from .driver import GatewayDriver


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("gateway")
    add_option(group, "--backends", type=parse_backends, metavar="NAME=HOST:PORT,...", help="the backends, in routing order")
    add_option(
        group,
        "--backends-file",
        default="",
        help="a file naming the backends instead, one 'NAME = HOST:PORT' a line ('#' comments)",
    )
    add_option(
        group, "--default-backend", default="", help="where a job goes when no backend is known to fit it (default: the first)"
    )
    add_option(group, "--backend-timeout", default=30.0, type=units.parse_duration, help="seconds to wait for a backend's answer")


def build_driver(args: argparse.Namespace) -> GatewayDriver:
    if bool(args.backends) == bool(args.backends_file):
        raise SystemExit("batchgate serve gateway: give the backends with --backends or with --backends-file (one of them)")
    try:
        backends = args.backends or read_backends_file(Path(args.backends_file))
    except argparse.ArgumentTypeError as error:
        raise SystemExit(f"batchgate serve gateway: --backends-file: {error}") from None
    names = [backend.name for backend in backends]
    if args.default_backend and args.default_backend not in names:
        raise SystemExit(
            f"batchgate serve gateway: --default-backend {args.default_backend!r} is not one of the backends ({', '.join(names)})"
        )
    return GatewayDriver(backends, default_backend=args.default_backend, timeout=args.backend_timeout)


SERVICE = ServiceDefinition(
    name="gateway",
    default_port=50051,
    description="Route jobs to named backend services and merge their updates into one resumable stream.",
    add_arguments=add_arguments,
    build_driver=build_driver,
)
