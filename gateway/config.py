"""Which backends a gateway forwards to, in routing order.

On the command line (or $BATCHGATE_BACKENDS):  --backends small=127.0.0.1:50061,big=127.0.0.1:50062
In a file (--backends-file), one backend a line, `#` starting a comment:

    # name   = address
    small    = 127.0.0.1:50061
    big      = 127.0.0.1:50062
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class BackendAddress:
    name: str
    address: str  # HOST:PORT


def parse_backends(text: str) -> list[BackendAddress]:
    """`NAME=HOST:PORT,NAME=HOST:PORT`; raises argparse.ArgumentTypeError saying what is wrong."""
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    return _checked([_entry(entry, f"in {entry!r}") for entry in entries])


def read_backends_file(path: Path) -> list[BackendAddress]:
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {error.strerror}") from None
    backends: list[BackendAddress] = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if text:
            backends.append(_entry(text, f"{path}, line {number}"))
    return _checked(backends)


def _entry(text: str, where: str) -> BackendAddress:
    name, found, address = (part.strip() for part in text.partition("="))
    if not found:
        raise argparse.ArgumentTypeError(f"{where}: expected NAME = HOST:PORT")
    if not _NAME.match(name):
        raise argparse.ArgumentTypeError(f"{where}: backend name {name!r} must be letters, digits, '_', '.' or '-'")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{where}: address {address!r} is not HOST:PORT")
    return BackendAddress(name, address)


def _checked(backends: list[BackendAddress]) -> list[BackendAddress]:
    if not backends:
        raise argparse.ArgumentTypeError("no backend given")
    names = [backend.name for backend in backends]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"backend names must be unique; repeated: {', '.join(repeated)}")
    return backends
