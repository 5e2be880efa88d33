"""The one configuration model: command-line flags, each with an environment-variable fallback.

Every option is declared with `add_option`; the variable is the flag's name in upper snake case
under BATCHGATE_ (`--slurm-partition` reads BATCHGATE_SLURM_PARTITION). A flag given on the
command line wins over the variable, which wins over the default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

ENV_PREFIX = "BATCHGATE_"


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def add_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    *,
    default: Any = None,
    help: str,
    type: Callable[[str], Any] = str,
    choices: list[str] | None = None,
    metavar: str | None = None,
) -> None:
    """Declare `--flag VALUE`, falling back to $BATCHGATE_FLAG, then to `default`."""
    variable = env_name(flag)
    raw = os.environ.get(variable)
    value = default
    if raw is not None:
        try:
            value = type(raw)
        except (ValueError, argparse.ArgumentTypeError) as error:
            raise SystemExit(f"batchgate: ${variable}={raw!r}: {error}") from None
    shown = "" if default in (None, "") else f"; default {default}"
    parser.add_argument(
        flag,
        default=value,
        type=type,
        choices=choices,
        metavar=metavar,
        help=f"{help} (env {variable}{shown})",
    )


def add_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str, *, help: str) -> None:
    """Declare a boolean `--flag`, also switched on by $BATCHGATE_FLAG=1/true/yes."""
    variable = env_name(flag)
    default = parse_bool(os.environ.get(variable, "false"))
    parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=f"{help} (env {variable})")


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")
