"""Toil batch-system plugin: `toil ... --batchSystem batchgate` runs a workflow's jobs through a
batchgate service (the gateway, or any one backend).

Toil imports every top-level module named `toil_batch_system_*` that it finds on sys.path, and
importing this one registers the name. The class is loaded only when Toil asks for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from toil.batchSystems.registry import add_batch_system_factory

if TYPE_CHECKING:
    from toil.batchSystems.abstractBatchSystem import AbstractBatchSystem

BATCH_SYSTEM_NAME = "batchgate"


def batchgate_batch_system_factory() -> type[AbstractBatchSystem]:
    from toil_batch_system_batchgate.batch_system import BatchgateBatchSystem

    return BatchgateBatchSystem


add_batch_system_factory(BATCH_SYSTEM_NAME, batchgate_batch_system_factory)
