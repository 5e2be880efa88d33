"""One batchgate process: a driver behind the kit, served over gRPC with health, reflection and
Prometheus metrics, shut down gracefully on SIGTERM/SIGINT.

    batchgate serve local --listen 127.0.0.1:50061 --state-dir var/local
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from batchgate import logs, output, registry, statuspage, units
from batchgate.admission import Gate, RateLimit
from batchgate.auth import Tokens, TokensFileError, refuse_unprotected
from batchgate.config import add_flag, add_option
from batchgate.grpc_api import BatchSystemServicer, add_to_server
from batchgate.jobspec import Defaults
from batchgate.service import BatchService
from batchgate.store import Store
from batchgate.streams import StreamLimits, Subscribers
from batchgate.v1 import batchgate_pb2 as pb

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BatchSystem"].full_name
STREAM_KEEPALIVE_SECONDS = 30.0  # an empty message on a quiet stream: proxies keep it open
HEALTH_INTERVAL_SECONDS = 2.0
STORE_READERS = 4  # threads reading the store for streams that fell behind the in-memory tail


def add_server_arguments(parser: argparse.ArgumentParser, definition: registry.ServiceDefinition) -> None:
    group = parser.add_argument_group("server")
    add_option(group, "--name", default=definition.name, help="the backend name this service reports")
    add_option(group, "--listen", default=f"127.0.0.1:{definition.default_port}", help="gRPC address (port 0: any free port)")
    add_option(
        group,
        "--metrics-listen",
        default=f"127.0.0.1:{definition.default_port + 1000}",
        help="address of Prometheus metrics (/metrics) and the live status page (/); 'off' to serve neither",
    )
    add_option(group, "--state-dir", default=str(Path("var") / definition.name), help="where the service keeps its SQLite store")
    add_option(group, "--ready-file", default="", help="write the bound addresses here (JSON) once serving")
    add_option(
        group,
        "--workers",
        default=32,
        type=int,
        help="threads that do unary calls' blocking work (the store, the driver); open streams hold none",
    )
    limits = parser.add_argument_group("limits (past one, a call fails RESOURCE_EXHAUSTED naming the flag)")
    add_option(limits, "--max-streams", default=10_000, type=int, help="open GetUpdatedJob streams in all")
    add_option(
        limits,
        "--max-streams-per-peer",
        default=1_000,
        type=int,
        help="open GetUpdatedJob streams of one client connection (gRPC's peer: address and port)",
    )
    add_option(
        limits,
        "--rate-limit",
        default=0.0,
        type=float,
        help="calls a second one tenant may make, on average (0: no limit); past it RESOURCE_EXHAUSTED with RetryInfo",
    )
    add_option(limits, "--rate-burst", default=100, type=int, help="calls one tenant may make at once beyond --rate-limit")
    add_option(limits, "--max-issue-batch", default=10_000, type=int, help="jobs in one IssueJobs call")
    add_option(
        limits,
        "--max-message-size",
        default=4 * 1024**2,
        type=units.parse_bytes,
        help="bytes of one request (e.g. 4M; an IssueJobs of many jobs is one request)",
    )
    add_option(
        limits,
        "--update-tail",
        default=50_000,
        type=int,
        help="latest updates kept in memory for live streams; a stream further behind reads the store",
    )
    add_option(group, "--tls-cert", default="", help="PEM certificate: serve TLS instead of plaintext")
    add_option(group, "--tls-key", default="", help="PEM private key for --tls-cert")
    add_option(group, "--tls-client-ca", default="", help="PEM CA bundle: require client certificates signed by it")
    add_option(
        group,
        "--tokens-file",
        default="",
        help="file of bearer-token hashes and what each grants (batchgate token makes a line); "
        "every call then needs 'authorization: Bearer TOKEN'; re-read on SIGHUP",
    )
    add_flag(
        group,
        "--insecure-public",
        help="serve on a non-loopback address with neither TLS nor tokens (something else must protect it)",
    )
    add_option(group, "--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    defaults = parser.add_argument_group("job defaults (for resources a job does not name)")
    add_option(defaults, "--default-cores", default=1.0, type=float, help="cores")
    add_option(defaults, "--default-memory", default=2 * 1024**3, type=units.parse_bytes, help="memory, e.g. 2G")
    add_option(defaults, "--default-disk", default=2 * 1024**3, type=units.parse_bytes, help="disk, e.g. 2G")
    output.add_arguments(parser)


def main(service_name: str, argv: list[str]) -> int:
    definition = registry.load(service_name)
    parser = argparse.ArgumentParser(prog=f"batchgate serve {definition.name}", description=definition.description)
    add_server_arguments(parser, definition)
    definition.add_arguments(parser)
    args = parser.parse_args(argv)
    logs.setup(args.log_level)
    serve(definition, args)
    return 0


def serve(definition: registry.ServiceDefinition, args: argparse.Namespace) -> None:
    refuse_unprotected(args.listen, tls=bool(args.tls_cert), tokens=bool(args.tokens_file), insecure_public=args.insecure_public)
    try:
        tokens = Tokens(Path(args.tokens_file) if args.tokens_file else None)
    except TokensFileError as error:
        raise SystemExit(f"batchgate serve {definition.name}: --tokens-file: {error}") from None
    driver = definition.build_driver(args)
    store = Store(Path(args.state_dir) / f"{args.name}.sqlite")
    service = BatchService(
        driver,
        store,
        name=args.name,
        defaults=Defaults(cores=args.default_cores, memory=args.default_memory, disk=args.default_disk),
        update_tail=args.update_tail,
        output=output.OutputSettings.from_args(args),
    )
    service.start()
    try:
        asyncio.run(_serve(service, args, tokens))
    finally:
        service.stop()
        log.info("stopped")


async def _serve(service: BatchService, args: argparse.Namespace, tokens: Tokens) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop_requested.set)
    loop.add_signal_handler(signal.SIGHUP, tokens.reload)

    calls = ThreadPoolExecutor(max_workers=args.workers, thread_name_prefix="call")
    store_readers = ThreadPoolExecutor(max_workers=STORE_READERS, thread_name_prefix="store-reader")
    server = grpc.aio.server(
        migration_thread_pool=calls,
        options=[
            # What it sends stays small whatever this says: a stream's message holds at most
            # 1 MiB of updates (updatelog.MAX_BYTES_PER_MESSAGE), under any client's 4 MiB default.
            ("grpc.max_receive_message_length", args.max_message_size),
            # Calls gRPC has received but the event loop has not taken up yet: past 1000 gRPC
            # refuses new calls at random, and at 3000 all of them, so that a burst of streams
            # (a gateway's watchers reconnecting at once) would be cut off with CANCELLED, not
            # answered by our limits. Let as many wait as there may be streams.
            ("grpc.server.max_pending_requests", max(1000, args.max_streams)),
            ("grpc.server.max_pending_requests_hard_limit", max(3000, 2 * args.max_streams)),
        ],
    )
    subscribers = Subscribers(service.updates, loop, StreamLimits(total=args.max_streams, per_peer=args.max_streams_per_peer))
    servicer = BatchSystemServicer(
        service,
        subscribers,
        calls=calls,
        store_readers=store_readers,
        max_issue_batch=args.max_issue_batch,
        keepalive_seconds=STREAM_KEEPALIVE_SECONDS,
    )
    gate = Gate(
        tokens,
        job_sets_of=service.job_sets_of,
        calls=calls,
        observe=service.metrics.observe_call,
        rate_limit=RateLimit(args.rate_limit, args.rate_burst) if args.rate_limit > 0 else None,
    )
    add_to_server(servicer, server, gate)
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = _bind(server, args)
    await server.start()
    # Python's full garbage collections scan every object it tracks: with thousands of open
    # streams they took 0.5-1.5 s here, stalling every call. What exists now lives as long as
    # the process (frozen: never scanned), and full collections come far less often; the kit
    # makes few reference cycles.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    # A thread that was handed work (the issuer, a call's worker) waits for the GIL up to the
    # switch interval while another thread computes: 5 ms by default, 1 ms here.
    sys.setswitchinterval(0.001)
    host = args.listen.rsplit(":", 1)[0]
    metrics_port = None
    if args.metrics_listen != "off":
        metrics_port = await statuspage.serve(
            args.metrics_listen, service, subscribers, calls=calls, store_readers=store_readers, tokens=tokens
        )
    metrics_address = metrics_port.address if metrics_port else ""
    health_reports = asyncio.create_task(_report_health(service, health_servicer, calls))
    address = f"{host}:{port}"
    log.info(
        "%s serving on %s (%s, %s; metrics %s, state %s)",
        args.name,
        address,
        "TLS" if args.tls_cert else "plaintext",
        f"tokens of {len(tokens.tenant_names())} tenant(s)" if tokens.required else "no tokens",
        metrics_address or "off",
        service.store.path,
    )
    if args.ready_file:
        _write_ready_file(Path(args.ready_file), {"address": address, "metrics": metrics_address, "pid": os.getpid()})

    await stop_requested.wait()
    log.info("shutting down")
    health_reports.cancel()
    await health_servicer.enter_graceful_shutdown()
    service.updates.close()  # ends every open stream, so the server need not wait for them
    if metrics_port:
        await metrics_port.close()
    await server.stop(grace=5)
    servicer.close()
    calls.shutdown(wait=False, cancel_futures=True)
    store_readers.shutdown(wait=False, cancel_futures=True)


async def _report_health(service: BatchService, health_servicer: health_aio.HealthServicer, calls: Executor) -> None:
    """SERVING while the store answers; and, for a gateway, one status per backend by name."""
    statuses = {True: health_pb2.HealthCheckResponse.SERVING, False: health_pb2.HealthCheckResponse.NOT_SERVING}
    loop = asyncio.get_running_loop()
    while True:
        store_works = await loop.run_in_executor(calls, service.store.ping)
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, statuses[store_works])
        for name, healthy in (await loop.run_in_executor(calls, service.driver.health)).items():
            await health_servicer.set(name, statuses[healthy])
        await asyncio.sleep(HEALTH_INTERVAL_SECONDS)


def _bind(server: grpc.aio.Server, args: argparse.Namespace) -> int:
    if not args.tls_cert:
        return server.add_insecure_port(args.listen)
    credentials = grpc.ssl_server_credentials(
        [(Path(args.tls_key).read_bytes(), Path(args.tls_cert).read_bytes())],
        root_certificates=Path(args.tls_client_ca).read_bytes() if args.tls_client_ca else None,
        require_client_auth=bool(args.tls_client_ca),
    )
    return server.add_secure_port(args.listen, credentials)


def _write_ready_file(path: Path, content: dict[str, object]) -> None:
    # Written whole then renamed, so a watcher never reads half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(content))
    partial.replace(path)
