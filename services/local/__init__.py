"""The local backend: jobs run as processes on this machine.

    batchgate serve local [--cores 2] [--memory 8G] [--disk 50G]
"""

from __future__ import annotations

import argparse

import psutil

from batchgate import units
from batchgate.config import add_option
from batchgate.registry import ServiceDefinition

from .budget import Budget
from .driver import LocalDriver
from .gpus import detect_nvidia_gpus


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("local backend (budgets default to the whole machine)")
    add_option(group, "--cores", default=None, type=float, help="cores jobs may use in all, in steps of 0.1")
    add_option(group, "--memory", default=None, type=units.parse_bytes, help="memory jobs may use in all, e.g. 8G")
    add_option(group, "--disk", default=None, type=units.parse_bytes, help="disk jobs may use in all, e.g. 50G")
    add_option(group, "--gpus", default="auto", help="'auto' (nvidia-smi) or 'none'")
    add_option(group, "--kill-grace", default=3.0, type=units.parse_duration, help="seconds between SIGTERM and SIGKILL on kill")


def build_driver(args: argparse.Namespace) -> LocalDriver:
    budget = Budget(
        cores=args.cores if args.cores is not None else float(psutil.cpu_count() or 1),
        memory=args.memory if args.memory is not None else psutil.virtual_memory().total,
        disk=args.disk if args.disk is not None else psutil.disk_usage(".").total,
        gpus=detect_nvidia_gpus() if args.gpus == "auto" else [],
    )
    return LocalDriver(budget, kill_grace_seconds=args.kill_grace)


SERVICE = ServiceDefinition(
    name="local",
    default_port=50061,
    description="Run jobs as processes on this machine, within a budget of cores, memory, disk and GPUs.",
    add_arguments=add_arguments,
    build_driver=build_driver,
)
