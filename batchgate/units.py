"""Human-friendly amounts: byte sizes ("2G", "512MiB") and durations ("90", "1:30:00", "2h")."""

from __future__ import annotations

import argparse
import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtpe]?)(i?)b?\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}


def parse_bytes(text: str) -> int:
    """Bytes in `text`. K, M, G, T (also Ki, KiB, KB...) are binary, 1024-based, as Slurm reads
    them; a bare number is bytes. (Toil reads "8G" as decimal and only "8Gi" as binary: batchgate
    takes both as 8 GiB, the larger, so a job never gets less than it asked for.)"""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 512M, 2G, 1.5GiB)")
    number, prefix, _binary = match.groups()
    return int(float(number) * 1024 ** _POWERS[prefix.lower()])


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in `text`: "90", "90s", "15m", "2h", "1d", or "[[D-]H:]M:S" as Slurm writes it."""
    match = _DURATION.match(text)
    if match:
        number, unit = match.groups()
        return float(number) * _DURATION_UNITS[(unit or "s").lower()]
    days = 0
    clock = text.strip()
    if "-" in clock:
        day_text, clock = clock.split("-", 1)
        if not day_text.isdigit():
            raise argparse.ArgumentTypeError(f"not a duration: {text!r}")
        days = int(day_text)
    parts = clock.split(":")
    if not 1 <= len(parts) <= 3 or not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 90, 15m, 2h or 1:30:00)")
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + int(part)
    return float(days * 86400 + seconds)
