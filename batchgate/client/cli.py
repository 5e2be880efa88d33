"""The `batchgate` command: run a service, or talk to one.

    batchgate serve local --listen 127.0.0.1:50061   run a service (its own flags follow its name)
    batchgate submit --cores 1 --memory 2G -- python3 train.py --epochs 3
    batchgate submit --wait -- make test              wait for it, show its output, exit as it did
    batchgate logs --stderr --follow 42               a job's output, as it writes it
    batchgate watch --count 1                        follow the updates
    batchgate setenv --job-set wf-1 GREETING=hi      a variable for a job set's later jobs
    batchgate --json ls --running                    any answer as JSON (protobuf's JSON mapping)
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from itertools import islice
from typing import NoReturn, TextIO, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from batchgate import config, registry, units
from batchgate.client.batch_client import DEFAULT_ADDRESS, BatchgateClient, job_spec
from batchgate.client.formatting import (
    UpdateTally,
    describe_capabilities,
    describe_check,
    describe_job_ids,
    describe_running,
    describe_status,
    describe_update,
    reason_name,
)
from batchgate.output import ONE_LOG_FEATURE, STDERR_TAIL_HEADING
from batchgate.errors import BatchgateError, InvalidArgument, NoOutput
from batchgate.v1 import batchgate_pb2 as pb

Command = Callable[[BatchgateClient, argparse.Namespace], int]
Answer = TypeVar("Answer", bound=Message)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other error of this command, rather than argparse's usage dump.
        self.exit(2, f"batchgate: error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, passed_through = parser.parse_known_args(argv)
    try:
        if args.command == "serve":
            from batchgate import server

            return server.main(args.name, passed_through)
        if args.command == "token":
            from batchgate import auth

            return auth.token_main(passed_through)
        if args.command == "up":
            from batchgate import up

            return up.main(passed_through)
        if passed_through:
            parser.error(f"unrecognized arguments: {' '.join(passed_through)}")
        with BatchgateClient(
            args.address,
            job_set=getattr(args, "job_set", ""),
            timeout=args.timeout,
            tls_ca=args.tls_ca,
            tls_cert=args.tls_client_cert,
            tls_key=args.tls_client_key,
            token=args.token,
        ) as client:
            run: Command = args.run
            return run(client, args)
    except BatchgateError as error:
        print(f"batchgate: error: {error.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`batchgate watch | head`): not an error; keep Python's exit quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def build_parser() -> Parser:
    parser = Parser(prog="batchgate", description="One gRPC API for every batch scheduler.")
    config.add_option(parser, "--address", default=DEFAULT_ADDRESS, help="the service to talk to, HOST:PORT")
    config.add_option(parser, "--timeout", default=10.0, type=float, help="seconds to wait for each answer")
    config.add_option(parser, "--tls-ca", help="PEM file of the CA that signed the service's certificate")
    config.add_option(parser, "--tls-client-cert", help="PEM file of this client's certificate (mutual TLS)")
    config.add_option(parser, "--tls-client-key", help="PEM file of this client's private key (mutual TLS)")
    config.add_option(
        parser, "--token", help="bearer token for a service with a tokens file (prefer the variable: flags show in ps)"
    )
    config.add_flag(parser, "--json", help="print answers as JSON, one object a line")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", add_help=False, help="run a service; its flags follow its name")
    serve.add_argument("name", choices=sorted(registry.SERVICE_MODULES))
    commands.add_parser("up", add_help=False, help="run the whole system on this machine")
    commands.add_parser("token", add_help=False, help="make a bearer token and its line for a tokens file")

    submit = commands.add_parser("submit", help="issue a job; prints its id (one a line with --count)")
    add_spec_arguments(submit)
    submit.add_argument("--count", type=positive_int, default=1, help="issue this many copies in one call")
    submit.add_argument(
        "--wait",
        action="store_true",
        help="wait for the job, printing its stdout and stderr as it writes them, and exit with its exit status "
        "(128+N for a death by signal N), as srun does; Ctrl-C kills it",
    )
    submit.set_defaults(run=run_submit)

    logs = commands.add_parser("logs", help="a job's output, as the service keeps it")
    logs.add_argument("job_id", type=int, metavar="ID")
    logs.add_argument("--stderr", action="store_true", help="its standard error (default: its standard output)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing what it writes until it has ended")
    logs.add_argument("--tail", type=units.parse_bytes, default=0, metavar="SIZE", help="only its last SIZE bytes, e.g. 4K")
    logs.set_defaults(run=run_logs)

    check = commands.add_parser("check", help="would the service accept this job, and where would it run")
    add_spec_arguments(check)
    check.set_defaults(run=run_check)

    listing = commands.add_parser("ls", help="ids of the jobs issued and not finished")
    listing.add_argument("--running", action="store_true", help="only running jobs, with their seconds running")
    listing.add_argument("--job-set", default="", help="only this job set")
    listing.set_defaults(run=run_ls)

    kill = commands.add_parser("kill", help="kill jobs; returns once they are dead")
    kill.add_argument("job_ids", type=int, nargs="+", metavar="ID")
    kill.set_defaults(run=run_kill)

    watch = commands.add_parser("watch", help="follow the updates: sequence, job, reason, exit status, wall time")
    watch.add_argument("--after", type=int, default=0, metavar="SEQ", help="start after this sequence (default 0: all the service holds)")
    watch.add_argument("--job-set", default="", help="only this job set")
    watch.add_argument("--count", type=positive_int, help="stop after this many updates")
    watch.set_defaults(run=run_watch)

    setenv = commands.add_parser("setenv", help="set (NAME=VALUE) or unset (NAME) a variable for later jobs")
    setenv.add_argument("assignment", metavar="NAME[=VALUE]")
    setenv.add_argument("--job-set", default="", help="for this job set's jobs alone (default: every job)")
    setenv.set_defaults(run=run_setenv)

    commands.add_parser("status", help="why queued jobs wait").set_defaults(run=run_status)
    commands.add_parser("caps", help="the backend's name, limits and features").set_defaults(run=run_caps)
    return parser


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cores", type=float, help="CPUs, fractions allowed")
    parser.add_argument("--memory", help="bytes, or a size such as 512M or 2G")
    parser.add_argument("--disk", help="bytes, or a size such as 10G")
    parser.add_argument("--gpus", action="append", default=[], metavar="N[:KIND[:MODEL]]", help="accelerators (repeatable)")
    parser.add_argument("--wall-time", help="limit: seconds, 15m, 2h or 1:30:00")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="job environment (repeatable)")
    parser.add_argument("--name", default="", help="job name")
    parser.add_argument("--cwd", default="", help="working directory")
    parser.add_argument("--stdout", default="", help="file for the job's standard output")
    parser.add_argument("--stderr", default="", help="file for the job's standard error")
    parser.add_argument("--job-set", default="", help="job set (e.g. a workflow id)")
    parser.add_argument("--backend", default="", help="the backend to run on (gateway only)")
    parser.add_argument("--request-key", default="", help="idempotency key; with --count, copy N gets KEY-N")
    parser.add_argument("--preemptible", action="store_true", help="the job may run on preemptible nodes")
    parser.add_argument("command_words", nargs=argparse.REMAINDER, metavar="-- COMMAND...")


def spec_from(args: argparse.Namespace) -> pb.JobSpec:
    return job_spec(
        command_line(args.command_words),
        name=args.name,
        cores=args.cores,
        memory=args.memory,
        disk=args.disk,
        accelerators=args.gpus,
        preemptible=args.preemptible,
        wall_time=args.wall_time,
        environment=environment_from(args.env),
        working_directory=args.cwd,
        stdout_path=args.stdout,
        stderr_path=args.stderr,
        request_key=args.request_key,
        backend=args.backend,
    )


def command_line(words: Sequence[str]) -> str:
    """The shell command: one word is taken as a shell string, several are quoted and joined."""
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise InvalidArgument("command", "give the command after --, e.g. batchgate submit -- echo hello")
    return words[0] if len(words) == 1 else shlex.join(words)


def environment_from(assignments: Sequence[str]) -> dict[str, str]:
    environment = {}
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        if not name or not equals:
            raise InvalidArgument("environment", f"expected NAME=VALUE, got {assignment!r}")
        environment[name] = value
    return environment


def run_submit(client: BatchgateClient, args: argparse.Namespace) -> int:
    spec = spec_from(args)
    if args.wait:
        if args.count != 1:
            raise InvalidArgument("count", "--wait waits for one job; leave --count out")
        return submit_and_wait(client, spec)
    if args.count == 1:
        job_ids = [client.issue(spec)]
    else:
        job_ids = client.issue_many([copy_of(spec, index) for index in range(args.count)])
    show(args, pb.IssueJobsResponse(job_ids=job_ids), describe_job_ids)
    return 0


def submit_and_wait(client: BatchgateClient, spec: pb.JobSpec) -> int:
    """Issue one job, print its output as it comes, and return its exit status."""
    if not client.job_set:
        # A job set of its own, so the update stream carries this job's update and few others.
        client.job_set = f"submit-{uuid.uuid4().hex[:12]}"
    streams = ((False, sys.stdout),) if one_log(client, spec) else ((False, sys.stdout), (True, sys.stderr))
    job_id = client.issue(spec)
    print(f"batchgate: job {job_id} issued", file=sys.stderr, flush=True)
    copiers = [threading.Thread(target=copy_output, args=(client, job_id, stderr, sink), daemon=True) for stderr, sink in streams]
    for copier in copiers:
        copier.start()
    try:
        update = next(update for update in client.updates() if update.job_id == job_id)
    except KeyboardInterrupt:
        client.kill([job_id])
        print(f"batchgate: job {job_id} killed", file=sys.stderr)
        return 130
    for copier in copiers:
        copier.join()  # the service ends each stream once the job has ended and all is sent
    if update.exit_reason == pb.EXIT_REASON_FINISHED and update.exit_status == 0:
        return 0
    # Its stderr is printed already: not the end of it again, which the message may quote.
    message = update.message.partition(STDERR_TAIL_HEADING)[0].strip().rstrip(";")
    detail = f": {message}" if message else ""
    print(f"batchgate: job {job_id} {reason_name(update.exit_reason)} with exit status {update.exit_status}{detail}", file=sys.stderr)
    return update.exit_status or 1


def one_log(client: BatchgateClient, spec: pb.JobSpec) -> bool:
    """Whether the backend a job goes to keeps its stdout and stderr as one log (Kubernetes):
    then both streams are that log, printed once (to stdout). Not when the job names a file
    for a stream: that stream goes there, apart from the log."""
    if spec.stdout_path or spec.stderr_path:
        return False
    capabilities = client.capabilities()
    if not capabilities.backends:
        return ONE_LOG_FEATURE in capabilities.features
    backend = spec.backend or client.check(spec).backend  # where a gateway would send it
    return any(ONE_LOG_FEATURE in each.features for each in capabilities.backends if each.backend == backend)


def copy_output(client: BatchgateClient, job_id: int, stderr: bool, sink: TextIO) -> None:
    """Copy one of a job's streams to `sink` (sys.stdout or sys.stderr) as it is written."""
    out = sink.buffer
    try:
        for chunk in client.output(job_id, stderr=stderr, follow=True):
            out.write(chunk)
            out.flush()
    except NoOutput as why:
        print(f"batchgate: no {'stderr' if stderr else 'stdout'} to show: {why.message}", file=sys.stderr, flush=True)
    except BatchgateError as error:
        print(f"batchgate: reading the job's output failed: {error.message}", file=sys.stderr, flush=True)


def copy_of(spec: pb.JobSpec, index: int) -> pb.JobSpec:
    copy = pb.JobSpec()
    copy.CopyFrom(spec)
    if spec.request_key:
        copy.request_key = f"{spec.request_key}-{index}"
    return copy


def run_check(client: BatchgateClient, args: argparse.Namespace) -> int:
    verdict = client.check(spec_from(args))
    show(args, verdict, describe_check)
    return 0 if verdict.accepted else 1


def run_ls(client: BatchgateClient, args: argparse.Namespace) -> int:
    if args.running:
        show(args, pb.ListRunningJobsResponse(seconds_running=client.running_job_ids()), describe_running)
    else:
        show(args, pb.ListIssuedJobsResponse(job_ids=client.issued_job_ids()), describe_job_ids)
    return 0


def run_logs(client: BatchgateClient, args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    for chunk in client.output(args.job_id, stderr=args.stderr, tail_bytes=args.tail, follow=args.follow):
        out.write(chunk)
        out.flush()
    return 0


def run_kill(client: BatchgateClient, args: argparse.Namespace) -> int:
    client.kill(args.job_ids)
    return 0


def run_watch(client: BatchgateClient, args: argparse.Namespace) -> int:
    tally = UpdateTally()
    try:
        for update in islice(client.updates(after_sequence=args.after), args.count):
            tally.add(update)
            show(args, update, describe_update)
    finally:
        print(f"batchgate: {tally}", file=sys.stderr)
    return 0


def run_setenv(client: BatchgateClient, args: argparse.Namespace) -> int:
    name, equals, value = args.assignment.partition("=")
    client.set_env(name, value if equals else None)
    return 0


def run_status(client: BatchgateClient, args: argparse.Namespace) -> int:
    show(args, client.status(), describe_status)
    return 0


def run_caps(client: BatchgateClient, args: argparse.Namespace) -> int:
    show(args, client.capabilities(), describe_capabilities)
    return 0


def show(args: argparse.Namespace, answer: Answer, describe: Callable[[Answer], list[str]]) -> None:
    """Print an answer as lines for a person, or with --json as one line of protobuf's JSON."""
    if args.json:
        lines = [
            json_format.MessageToJson(
                answer,
                preserving_proto_field_name=True,
                indent=None,
                always_print_fields_with_no_presence=True,
                unquote_int64_if_possible=True,
            )
        ]
    else:
        lines = describe(answer)
    for line in lines:
        print(line, flush=True)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())
