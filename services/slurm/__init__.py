"""The Slurm backend: jobs go to Slurm through sbatch, squeue, sacct, scancel and sinfo.

    batchgate serve slurm [--slurm-partition debug] [--slurm-poll-interval 1] ...

Run it where Slurm's client commands work (a login node); scripts/slurm-up starts a
single-node Slurm on this machine for trying it out and for the tests.
"""

from __future__ import annotations

import argparse
import shlex

from batchgate import units
from batchgate.config import add_option
from batchgate.registry import ServiceDefinition

from .driver import SlurmDriver, extra_args_problem


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("slurm backend (a job's SlurmOptions override these)")
    add_option(group, "--slurm-partition", default="", help="partition for jobs (default: Slurm's default partition)")
    add_option(group, "--slurm-account", default="", help="account to charge")
    add_option(group, "--slurm-qos", default="", help="quality of service")
    add_option(group, "--slurm-gres", default="", help="generic resources every job asks for, e.g. 'license:1'")
    add_option(group, "--slurm-time-limit", type=units.parse_duration, help="time limit of jobs that name no wall time, e.g. 2h")
    add_option(group, "--slurm-extra-args", default="", help="more sbatch arguments, as a shell would split them")
    add_option(group, "--slurm-poll-interval", default=1.0, type=units.parse_duration, help="seconds between squeue calls")
    add_option(
        group,
        "--slurm-command-timeout",
        default=60.0,
        type=units.parse_duration,
        help="seconds a failing Slurm command is retried before the jobs it concerns fail",
    )


def build_driver(args: argparse.Namespace) -> SlurmDriver:
    extra_args = shlex.split(args.slurm_extra_args)
    for arg in extra_args:
        problem = extra_args_problem(arg)
        if problem:
            raise SystemExit(f"batchgate: --slurm-extra-args: {problem}")
    return SlurmDriver(
        partition=args.slurm_partition,
        account=args.slurm_account,
        qos=args.slurm_qos,
        gres=args.slurm_gres,
        time_limit=args.slurm_time_limit,
        extra_args=extra_args,
        poll_interval=args.slurm_poll_interval,
        command_timeout=args.slurm_command_timeout,
    )


SERVICE = ServiceDefinition(
    name="slurm",
    default_port=50062,
    description="Run jobs on a Slurm cluster through its command-line tools (sbatch, squeue, sacct, scancel, sinfo).",
    add_arguments=add_arguments,
    build_driver=build_driver,
)
