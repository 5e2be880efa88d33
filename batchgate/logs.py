"""The one logging setup every batchgate process uses: one line per record, to stderr."""

from __future__ import annotations

import logging


def setup(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # grpc's and urllib3's debug chatter drowns ours; keep them at warnings.
    for noisy in ("grpc", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
