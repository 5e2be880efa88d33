"""The services batchgate can run, by name. Each module exposes `SERVICE: ServiceDefinition`."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass

from batchgate.driver import Driver

# name -> module; a module is imported only when its service is asked for, so a backend's
# optional dependencies (kubernetes, boto3) are needed only where that backend runs.
SERVICE_MODULES: dict[str, str] = {
    "gateway": "batchgate.gateway",
    "local": "batchgate.services.local",
    "slurm": "batchgate.services.slurm",
    "lsf": "batchgate.services.lsf",
    "mesos": "batchgate.services.mesos",
    "k8s": "batchgate.services.k8s",
    "awsbatch": "batchgate.services.awsbatch",
}


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    default_port: int  # gRPC; metrics listen on default_port + 1000 unless told otherwise
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    build_driver: Callable[[argparse.Namespace], Driver]


def load(name: str) -> ServiceDefinition:
    try:
        module_name = SERVICE_MODULES[name]
    except KeyError:
        known = ", ".join(sorted(SERVICE_MODULES))
        raise SystemExit(f"batchgate: no service named {name!r} (known: {known})") from None
    definition: ServiceDefinition = importlib.import_module(module_name).SERVICE
    return definition
