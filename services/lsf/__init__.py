"""The LSF backend: jobs go to IBM Spectrum LSF through bsub, bjobs, bhist, bacct, bkill, bhosts,
lshosts and bqueues.

    batchgate serve lsf [--lsf-queue normal] [--lsf-poll-interval 1] ...

Run it where LSF's client commands work (a login node, with LSF's profile sourced).
"""

from __future__ import annotations

import argparse
import shlex

from batchgate import units
from batchgate.config import add_option
from batchgate.registry import ServiceDefinition

from .driver import BJOBS_OUTPUTS, UNITS, LsfDriver, extra_args_problem


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("lsf backend (a job's LsfOptions override these)")
    add_option(group, "--lsf-queue", default="", help="queue for jobs (default: LSF's default queue)")
    add_option(group, "--lsf-project", default="", help="project to charge (bsub -P)")
    add_option(group, "--lsf-time-limit", type=units.parse_duration, help="run limit of jobs that name no wall time, e.g. 2h")
    add_option(group, "--lsf-extra-args", default="", help="more bsub arguments, as a shell would split them")
    add_option(
        group,
        "--lsf-unit-for-limits",
        default="",
        choices=["", *UNITS],
        help="the cluster's LSF_UNIT_FOR_LIMITS (default: read from $LSF_ENVDIR/lsf.conf, else `lsadmin showconf lim`)",
    )
    add_option(
        group,
        "--lsf-memory-per",
        default="job",
        choices=["job", "slot"],
        help="what the cluster's memory reservation counts: the whole job, or each slot (lsb.params RESOURCE_RESERVE_PER_TASK=Y)",
    )
    add_option(
        group,
        "--lsf-bjobs-output",
        default="auto",
        choices=BJOBS_OUTPUTS,
        help="how bjobs is asked: -json (LSF 10.1.0.2 and later), -o columns (LSF 9), the classic -w and -l (any LSF); "
        "auto: -json or classic, as `lsid` names the version",
    )
    add_option(group, "--lsf-poll-interval", default=1.0, type=units.parse_duration, help="seconds between bjobs calls")
    add_option(
        group,
        "--lsf-command-timeout",
        default=60.0,
        type=units.parse_duration,
        help="seconds a failing LSF command is retried before the jobs it concerns fail",
    )


def build_driver(args: argparse.Namespace) -> LsfDriver:
    extra_args = shlex.split(args.lsf_extra_args)
    for index in range(len(extra_args)):
        problem = extra_args_problem(extra_args, index)
        if problem:
            raise SystemExit(f"batchgate: --lsf-extra-args: {problem}")
    return LsfDriver(
        queue=args.lsf_queue,
        project=args.lsf_project,
        time_limit=args.lsf_time_limit,
        extra_args=extra_args,
        unit_for_limits=args.lsf_unit_for_limits,
        memory_per_slot=args.lsf_memory_per == "slot",
        bjobs_output=args.lsf_bjobs_output,
        poll_interval=args.lsf_poll_interval,
        command_timeout=args.lsf_command_timeout,
    )


SERVICE = ServiceDefinition(
    name="lsf",
    default_port=50063,
    description="Run jobs on an IBM Spectrum LSF cluster through its command-line tools (bsub, bjobs, bhist, bacct, bkill, bhosts, lshosts, bqueues).",
    add_arguments=add_arguments,
    build_driver=build_driver,
)
