"""The gateway: one BatchSystem address for every backend, one merged, resumable update stream.

    batchgate serve gateway --backends small=127.0.0.1:50061,big=127.0.0.1:50062 [--default-backend big]
    batchgate serve gateway --backends-file backends.conf      (one `NAME = HOST:PORT` a line)

A job goes to the backend its spec names, else to the first backend (in the order given) whose
capabilities fit it; see gateway/routing.py.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from batchgate import units
from batchgate.client.batch_client import open_channel
from batchgate.config import add_option
from batchgate.registry import ServiceDefinition

from .backend import CHANNEL_OPTIONS
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
    secured = parser.add_argument_group("gateway -> backends (TLS, mutual TLS and tokens)")
    add_option(secured, "--backend-tls-ca", default="", help="PEM CA bundle the backends' certificates are signed by; enables TLS")
    add_option(secured, "--backend-tls-cert", default="", help="PEM certificate the gateway shows the backends (mutual TLS)")
    add_option(secured, "--backend-tls-key", default="", help="PEM private key of --backend-tls-cert")
    add_option(
        secured,
        "--backend-token",
        default="",
        help="bearer token the gateway sends the backends; their tokens file must grant it the job sets 'gateway-*' "
        "(prefer the variable: flags show in ps)",
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
    if bool(args.backend_tls_cert) != bool(args.backend_tls_key):
        raise SystemExit("batchgate serve gateway: --backend-tls-cert and --backend-tls-key go together; give both or neither")
    connect = functools.partial(
        open_channel,
        tls_ca=args.backend_tls_ca or None,
        tls_cert=args.backend_tls_cert or None,
        tls_key=args.backend_tls_key or None,
        token=args.backend_token or None,
        options=CHANNEL_OPTIONS,
    )
    return GatewayDriver(backends, default_backend=args.default_backend, timeout=args.backend_timeout, connect=connect)


SERVICE = ServiceDefinition(
    name="gateway",
    default_port=50051,
    description="Route jobs to named backend services and merge their updates into one resumable stream.",
    add_arguments=add_arguments,
    build_driver=build_driver,
)
