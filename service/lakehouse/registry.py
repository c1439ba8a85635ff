"""Choosing the lakehouse target named by SYNC_TARGET."""
from __future__ import annotations

from service.lakehouse.base import LakehouseTarget


def get_target(config: dict) -> LakehouseTarget:
    name = config.get("SYNC_TARGET", "delta")
    if name == "delta":
        from service.lakehouse.delta import DeltaTarget

        return DeltaTarget.from_config(config)
    raise ValueError(f"unknown SYNC_TARGET {name!r}; expected one of: delta")
