"""The AWS Batch backend: jobs run as containers of AWS Batch, through boto3.

    batchgate serve awsbatch --awsbatch-job-queue QUEUE (--awsbatch-image IMAGE | --awsbatch-job-definition DEF)

Credentials come from the standard AWS chain (environment, ~/.aws, instance or task role);
batchgate has no setting of its own for secrets. --awsbatch-endpoint-url points it at an
AWS-compatible endpoint (the tests use moto's server).
"""

from __future__ import annotations

import argparse
import logging

from batchgate import units
from batchgate.config import add_option
from batchgate.registry import ServiceDefinition

from .aws import Refused
from .driver import AwsBatchDriver, Settings
from .jobs import AWS_MINIMUM_TIMEOUT

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("awsbatch backend (a job's AwsBatchOptions override queue, definition and image)")
    add_option(group, "--awsbatch-region", default="", help="AWS region (default: the AWS chain's, e.g. AWS_DEFAULT_REGION)")
    add_option(group, "--awsbatch-job-queue", default="", help="job queue jobs go to (required)")
    add_option(group, "--awsbatch-job-definition", default="", help="an existing job definition (name, name:revision or ARN)")
    add_option(
        group,
        "--awsbatch-image",
        default="",
        help="or: a container image, for which the service registers a job definition of its own",
    )
    add_option(group, "--awsbatch-host-paths", default="", help="host paths mounted at the same place in our own job definitions, comma-separated")
    add_option(group, "--awsbatch-job-role-arn", default="", help="IAM role the jobs of our own job definitions run as")
    add_option(group, "--awsbatch-owner-tag", default="", help="value of the Owner tag on every job and definition (as Toil's --awsBatchOwnerTag)")
    add_option(group, "--awsbatch-endpoint-url", default="", help="an AWS-compatible endpoint instead of AWS's own")
    add_option(
        group, "--awsbatch-retry-mode", default="standard", choices=["standard", "adaptive", "legacy"], help="botocore's retry mode"
    )
    add_option(group, "--awsbatch-max-attempts", default=5, type=int, help="botocore's attempts per call, throttling included")
    add_option(group, "--awsbatch-poll-interval", default=1.0, type=units.parse_duration, help="seconds between DescribeJobs passes")
    add_option(group, "--awsbatch-kill-timeout", default=120.0, type=units.parse_duration, help="how long a kill waits for AWS to end the jobs")
    add_option(
        group,
        "--awsbatch-give-up-after",
        default=900.0,
        type=units.parse_duration,
        help="how long AWS Batch may not answer before its live jobs are reported LOST",
    )
    add_option(
        group,
        "--awsbatch-minimum-timeout",
        default=AWS_MINIMUM_TIMEOUT,
        type=int,
        help="the endpoint's least job timeout in seconds: shorter wall times are raised to it (AWS's is 60)",
    )
    add_option(group, "--awsbatch-time-limit", type=units.parse_duration, help="timeout of jobs that name no wall time, e.g. 2h")
    add_option(group, "--awsbatch-max-disk", type=units.parse_bytes, help="refuse jobs asking more disk than this (not enforced: AWS Batch schedules no disk)")
    add_option(group, "--awsbatch-max-gpus", default=0, type=int, help="GPUs the queue's largest instances have (AWS does not say)")


def build_driver(args: argparse.Namespace) -> AwsBatchDriver:
    if not args.awsbatch_job_queue:
        raise SystemExit("batchgate: --awsbatch-job-queue (or BATCHGATE_AWSBATCH_JOB_QUEUE) is required")
    if bool(args.awsbatch_image) == bool(args.awsbatch_job_definition):
        raise SystemExit("batchgate: give --awsbatch-image or --awsbatch-job-definition (one of them)")
    if args.awsbatch_minimum_timeout < 1:
        raise SystemExit("batchgate: --awsbatch-minimum-timeout must be at least 1 second")
    settings = Settings(
        region=args.awsbatch_region,
        job_queue=args.awsbatch_job_queue,
        job_definition=args.awsbatch_job_definition,
        image=args.awsbatch_image,
        job_role_arn=args.awsbatch_job_role_arn,
        owner_tag=args.awsbatch_owner_tag,
        endpoint_url=args.awsbatch_endpoint_url,
        host_paths=tuple(path for path in args.awsbatch_host_paths.split(",") if path),
        retry_mode=args.awsbatch_retry_mode,
        max_attempts=args.awsbatch_max_attempts,
        poll_interval=args.awsbatch_poll_interval,
        kill_timeout=args.awsbatch_kill_timeout,
        give_up_after=args.awsbatch_give_up_after,
        minimum_timeout=args.awsbatch_minimum_timeout,
        default_wall_time=args.awsbatch_time_limit,
        max_disk=args.awsbatch_max_disk,
        max_gpus=args.awsbatch_max_gpus,
    )
    try:
        driver = AwsBatchDriver(settings)
    except Exception as error:  # botocore's NoRegionError and friends: say it before serving
        raise SystemExit(f"batchgate: cannot make an AWS Batch client: {error}") from None
    try:
        warning = driver.check()
    except Refused as error:
        raise SystemExit(f"batchgate: {error}") from None
    if warning:
        log.warning("%s", warning)
    return driver


SERVICE = ServiceDefinition(
    name="awsbatch",
    default_port=50065,
    description="Run jobs as AWS Batch containers, through boto3 (SubmitJob, DescribeJobs, TerminateJob).",
    add_arguments=add_arguments,
    build_driver=build_driver,
)
