"""The Mesos backend: batchgate as a Mesos framework, over the v1 scheduler HTTP API.

batchgate serve mesos --mesos-master 10.0.0.5:5050 [--mesos-role batch] ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

from batchgate import units
from batchgate.config import add_flag, add_option
from batchgate.registry import ServiceDefinition

from .api import master_url
from .driver import MesosDriver, MesosSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("mesos backend")
    add_option(
        group, "--mesos-master", default="127.0.0.1:5050", help="the leading master, host:port (ZooKeeper addresses are not supported)"
    )
    add_option(
        group,
        "--mesos-role",
        default="*",
        help="role(s) to subscribe with, comma-separated; the first is a job's default (MesosOptions.role picks another)",
    )
    add_option(group, "--mesos-framework-name", default="batchgate", help="the framework's name in Mesos")
    add_option(group, "--mesos-user", default="", help="the user tasks run as (default: the service's own)")
    add_option(group, "--mesos-principal", default="", help="principal for HTTP basic authentication with the master")
    add_option(group, "--mesos-secret", default="", help="secret for --mesos-principal (prefer the environment variable)")
    add_flag(group, "--mesos-checkpoint", help="ask agents to checkpoint tasks, so they survive an agent restart")
    add_option(
        group,
        "--mesos-failover-timeout",
        default=7 * 86400.0,
        type=units.parse_duration,
        help="how long Mesos keeps the framework's tasks while the service is away, e.g. 1d",
    )
    add_option(
        group,
        "--mesos-refuse-seconds",
        default=5.0,
        type=units.parse_duration,
        help="how long declined resources are not offered again (new jobs revive them)",
    )
    add_option(
        group,
        "--mesos-unreachable-timeout",
        default=60.0,
        type=units.parse_duration,
        help="how long a task on an unreachable agent is waited for before it is reported LOST",
    )
    add_option(
        group, "--mesos-kill-timeout", default=60.0, type=units.parse_duration, help="how long KillJobs waits for Mesos to confirm a kill"
    )
    add_option(
        group,
        "--mesos-kill-grace",
        default=3.0,
        type=units.parse_duration,
        help="seconds between SIGTERM and SIGKILL when a task is killed",
    )


def build_driver(args: argparse.Namespace) -> MesosDriver:
    try:
        master_url(args.mesos_master)
    except ValueError as error:
        raise SystemExit(f"batchgate: --mesos-master: {error}") from None
    roles = tuple(role.strip() for role in args.mesos_role.split(",") if role.strip()) or ("*",)
    settings = MesosSettings(
        master=args.mesos_master,
        roles=roles,
        framework_name=args.mesos_framework_name,
        user=args.mesos_user,
        principal=args.mesos_principal,
        secret=args.mesos_secret,
        checkpoint=args.mesos_checkpoint,
        failover_timeout=args.mesos_failover_timeout,
        refuse_seconds=args.mesos_refuse_seconds,
        unreachable_timeout=args.mesos_unreachable_timeout,
        kill_timeout=args.mesos_kill_timeout,
        kill_grace=args.mesos_kill_grace,
    )
    return MesosDriver(settings, Path(args.state_dir) / f"{args.name}.mesos-framework-id")


SERVICE = ServiceDefinition(
    name="mesos",
    default_port=50066,
    description="Run jobs on a Mesos cluster, as a framework on the v1 scheduler HTTP API.",
    add_arguments=add_arguments,
    build_driver=build_driver,
)
