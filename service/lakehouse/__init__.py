"""Lakehouse targets: where bronze and silver tables are written.

A target implements ``service.lakehouse.base.LakehouseTarget``; ``get_target(config)``
returns the one named by ``SYNC_TARGET``.
"""

from service.lakehouse.base import (
    LakehouseTarget,
    PermanentTargetError,
    TableRef,
    TableResult,
    TransientTargetError,
)
from service.lakehouse.registry import get_target

__all__ = [
    "LakehouseTarget",
    "PermanentTargetError",
    "TableRef",
    "TableResult",
    "TransientTargetError",
    "get_target",
]
