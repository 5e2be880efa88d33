"""The plugin's Toil options.

Every registered batch system adds its options to Toil's one parser, so each name carries the
batchgate prefix. Each option can also be given as a TOIL_BATCHGATE_* environment variable
(configargparse's env_var, as Toil's own batch systems do); a flag wins over the variable.
"""

from __future__ import annotations

from argparse import ArgumentParser, _ArgumentGroup
from dataclasses import dataclass

from toil.batchSystems.options import OptionSetter
from toil.common import Config


DEFAULT_WALL_TIME_ROUND_UP = 60


@dataclass(frozen=True)
class Option:
    flag: str
    dest: str  # the Config attribute; also names the variable
    help: str

    @property
    def env_var(self) -> str:
        return "TOIL_" + self.dest.upper()


OPTIONS = (
    Option(
        "--batchgateAddress",
        "batchgate_address",
        "host:port of the batchgate service (the gateway or one backend). "
        "Default: $BATCHGATE_ADDRESS, else 127.0.0.1:50051.",
    ),
    Option(
        "--batchgateJobSet",
        "batchgate_job_set",
        "Job set the workflow's jobs are issued in; listings and updates are scoped to it, so "
        "workflows sharing a service never see each other's jobs. Default: the workflow ID.",
    ),
    Option(
        "--batchgateJobSetPrefix",
        "batchgate_job_set_prefix",
        "Put before the workflow ID to make the default job set, e.g. 'alice-' for a token "
        "granted the job sets 'alice-*'.",
    ),
    Option(
        "--batchgateBackend",
        "batchgate_backend",
        "Backend the gateway should run every job on (e.g. slurm). Default: the gateway chooses "
        "by each job's requirements.",
    ),
    Option(
        "--batchgateWallTimeRoundUp",
        "batchgate_wall_time_round_up",
        "Seconds: a job's walltime is rounded up to a multiple of this before it becomes the "
        "backend's limit, so a Toil worker's own start-up never runs into a short limit (and a CWL "
        "ExpressionTool, whose ToolTimeLimit CWL ignores, is not stopped by one). 0 sends the "
        "walltime unchanged. Default: 60, whole minutes, as Toil's Slurm batch system does.",
    ),
    Option("--batchgateTlsCa", "batchgate_tls_ca", "PEM CA bundle to verify the service with; enables TLS."),
    Option("--batchgateTlsCert", "batchgate_tls_cert", "PEM client certificate for mutual TLS (with --batchgateTlsKey)."),
    Option("--batchgateTlsKey", "batchgate_tls_key", "PEM private key of --batchgateTlsCert."),
    Option(
        "--batchgateToken",
        "batchgate_token",
        "Bearer token for a service that wants one (its --tokens-file). Prefer the variable "
        "TOIL_BATCHGATE_TOKEN (or BATCHGATE_TOKEN): a flag shows in ps.",
    ),
)


def add_options(parser: ArgumentParser | _ArgumentGroup) -> None:
    for option in OPTIONS:
        # Toil's parser is configargparse's, whose add_argument takes env_var.
        parser.add_argument(option.flag, dest=option.dest, default=None, env_var=option.env_var, help=option.help)


def set_options(set_option: OptionSetter) -> None:
    for option in OPTIONS:
        set_option(option.dest)


@dataclass(frozen=True)
class Settings:
    """The options' values for one workflow run."""

    address: str | None
    job_set: str
    backend: str
    tls_ca: str | None
    tls_cert: str | None
    tls_key: str | None
    token: str | None = None
    wall_time_round_up: int = DEFAULT_WALL_TIME_ROUND_UP

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        # getattr: Config declares only Toil's own options; the plugin's are set on it by name.
        def value(dest: str) -> str | None:
            found: str | None = getattr(config, dest, None)
            return found or None

        assert config.workflowID is not None  # BatchSystemSupport has already insisted on it
        return cls(
            address=value("batchgate_address"),
            job_set=value("batchgate_job_set") or (value("batchgate_job_set_prefix") or "") + config.workflowID,
            backend=value("batchgate_backend") or "",
            tls_ca=value("batchgate_tls_ca"),
            tls_cert=value("batchgate_tls_cert"),
            tls_key=value("batchgate_tls_key"),
            token=value("batchgate_token"),
            wall_time_round_up=seconds(getattr(config, "batchgate_wall_time_round_up", None), "--batchgateWallTimeRoundUp"),
        )


def seconds(given: object, flag: str) -> int:
    if given is None or given == "":
        return DEFAULT_WALL_TIME_ROUND_UP
    try:
        value = int(str(given))
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{flag} takes a whole number of seconds >= 0, not {given!r}")
    return value
