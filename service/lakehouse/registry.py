"""Choosing the lakehouse target named by SYNC_TARGET.

A built-in name (``delta``), or ``package.module:ClassName`` for a target that lives
elsewhere; either way the class is built with ``from_config(config)``.
"""

from __future__ import annotations

import importlib

from service.lakehouse.base import LakehouseTarget

BUILTIN_TARGETS = {
    "delta": "service.lakehouse.delta:DeltaTarget",
    "databricks": "service.lakehouse.databricks:DatabricksTarget",
    "mcp": "service.lakehouse.mcp:McpTarget",
}


def target_class(name: str) -> type[LakehouseTarget]:
    path = BUILTIN_TARGETS.get(name, name)
    module_name, sep, class_name = path.partition(":")
    if not sep:
        raise ValueError(f"unknown SYNC_TARGET {name!r}; expected one of {', '.join(BUILTIN_TARGETS)} or module:Class")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, LakehouseTarget)):
        raise ValueError(f"SYNC_TARGET {name!r} is not a LakehouseTarget")
    return cls


def get_target(config: dict) -> LakehouseTarget:
    return target_class(config.get("SYNC_TARGET", "delta")).from_config(config)
