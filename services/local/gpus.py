"""NVIDIA GPUs on this machine, as nvidia-smi lists them (none where it is absent)."""

from __future__ import annotations

import csv
import logging
import shutil
import subprocess

from .budget import Gpu

log = logging.getLogger(__name__)


def detect_nvidia_gpus() -> list[Gpu]:
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return []
    try:
        listing = subprocess.run(
            [executable, "--query-gpu=index,name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError) as error:
        log.warning("nvidia-smi is present but failed (%s); offering no GPUs", error)
        return []
    return [Gpu(index=row[0].strip(), model=_model_name(row[1])) for row in csv.reader(listing.splitlines()) if len(row) >= 2]


def _model_name(name: str) -> str:
    """nvidia-smi's "NVIDIA A100-SXM4-40GB" as Toil's accelerator models read: "nvidia-a100-sxm4-40gb"."""
    return "-".join(name.strip().lower().split())
