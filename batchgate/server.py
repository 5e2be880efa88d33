"""One batchgate process: a driver behind the kit, served over gRPC with health, reflection and
Prometheus metrics, shut down gracefully on SIGTERM/SIGINT.

    batchgate serve local --listen 127.0.0.1:50061 --state-dir var/local
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
from concurrent import futures
from pathlib import Path

import grpc
import prometheus_client
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from batchgate import logs, registry, units
from batchgate.config import add_option
from batchgate.grpc_api import BatchSystemServicer
from batchgate.jobspec import Defaults
from batchgate.service import BatchService
from batchgate.store import Store
from batchgate.v1 import batchgate_pb2 as pb
from batchgate.v1 import batchgate_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BatchSystem"].full_name
STREAM_KEEPALIVE_SECONDS = 10.0
HEALTH_INTERVAL_SECONDS = 2.0


def add_server_arguments(parser: argparse.ArgumentParser, definition: registry.ServiceDefinition) -> None:
    group = parser.add_argument_group("server")
    add_option(group, "--name", default=definition.name, help="the backend name this service reports")
    add_option(group, "--listen", default=f"127.0.0.1:{definition.default_port}", help="gRPC address (port 0: any free port)")
    add_option(
        group,
        "--metrics-listen",
        default=f"127.0.0.1:{definition.default_port + 1000}",
        help="Prometheus metrics address; 'off' to serve none",
    )
    add_option(group, "--state-dir", default=str(Path("var") / definition.name), help="where the service keeps its SQLite store")
    add_option(group, "--ready-file", default="", help="write the bound addresses here (JSON) once serving")
    add_option(group, "--workers", default=64, type=int, help="gRPC handler threads (each open stream holds one)")
    add_option(group, "--tls-cert", default="", help="PEM certificate: serve TLS instead of plaintext")
    add_option(group, "--tls-key", default="", help="PEM private key for --tls-cert")
    add_option(group, "--tls-client-ca", default="", help="PEM CA bundle: require client certificates signed by it")
    add_option(group, "--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    defaults = parser.add_argument_group("job defaults (for resources a job does not name)")
    add_option(defaults, "--default-cores", default=1.0, type=float, help="cores")
    add_option(defaults, "--default-memory", default=2 * 1024**3, type=units.parse_bytes, help="memory, e.g. 2G")
    add_option(defaults, "--default-disk", default=2 * 1024**3, type=units.parse_bytes, help="disk, e.g. 2G")


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
    stop_requested = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stop_requested.set())

    driver = definition.build_driver(args)
    store = Store(Path(args.state_dir) / f"{args.name}.sqlite")
    service = BatchService(
        driver,
        store,
        name=args.name,
        defaults=Defaults(cores=args.default_cores, memory=args.default_memory, disk=args.default_disk),
    )
    service.start()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers, thread_name_prefix="grpc"))
    pb_grpc.add_BatchSystemServicer_to_server(BatchSystemServicer(service, keepalive_seconds=STREAM_KEEPALIVE_SECONDS), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = _bind(server, args)
    server.start()
    host = args.listen.rsplit(":", 1)[0]
    metrics_address = _start_metrics(args.metrics_listen)
    health_thread = threading.Thread(
        target=_report_health, args=(service, health_servicer, stop_requested), name="health", daemon=True
    )
    health_thread.start()
    address = f"{host}:{port}"
    log.info("%s serving on %s (metrics %s, state %s)", args.name, address, metrics_address or "off", store.path)
    if args.ready_file:
        _write_ready_file(Path(args.ready_file), {"address": address, "metrics": metrics_address, "pid": os.getpid()})

    # Wake now and then: a signal that the kernel delivers to one of grpc's threads only runs
    # its Python handler once the main thread executes bytecode again.
    while not stop_requested.wait(timeout=0.5):
        pass
    log.info("shutting down")
    health_servicer.enter_graceful_shutdown()
    service.updates.close()  # ends every open stream, so the server need not wait for them
    server.stop(grace=5).wait()
    service.stop()
    log.info("stopped")


def _report_health(service: BatchService, health_servicer: health.HealthServicer, stop_requested: threading.Event) -> None:
    """SERVING while the store answers; and, for a gateway, one status per backend by name."""
    statuses = {True: health_pb2.HealthCheckResponse.SERVING, False: health_pb2.HealthCheckResponse.NOT_SERVING}
    while True:
        store_works = service.store.ping()
        for name in ("", SERVICE_NAME):
            health_servicer.set(name, statuses[store_works])
        for name, healthy in service.driver.health().items():
            health_servicer.set(name, statuses[healthy])
        if stop_requested.wait(HEALTH_INTERVAL_SECONDS):
            return


def _bind(server: grpc.Server, args: argparse.Namespace) -> int:
    if not args.tls_cert:
        return server.add_insecure_port(args.listen)
    credentials = grpc.ssl_server_credentials(
        [(Path(args.tls_key).read_bytes(), Path(args.tls_cert).read_bytes())],
        root_certificates=Path(args.tls_client_ca).read_bytes() if args.tls_client_ca else None,
        require_client_auth=bool(args.tls_client_ca),
    )
    return server.add_secure_port(args.listen, credentials)


def _start_metrics(listen: str) -> str:
    if listen == "off":
        return ""
    host, _, port = listen.rpartition(":")
    metrics_server, _thread = prometheus_client.start_http_server(int(port), addr=host or "127.0.0.1")
    return f"{host or '127.0.0.1'}:{metrics_server.server_port}"


def _write_ready_file(path: Path, content: dict[str, object]) -> None:
    # Written whole then renamed, so a watcher never reads half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(content))
    partial.replace(path)
