"""Names of tenants' catalogs and of datasets' tables."""

from __future__ import annotations

import re
import uuid

_NON_IDENT = re.compile(r"[^a-z0-9]+")


def identifier(text: str, *, fallback: str, max_len: int = 60) -> str:
    """Lowercase [a-z0-9_] text usable as a catalog, schema or table name."""
    ident = _NON_IDENT.sub("_", text.lower()).strip("_")[:max_len].strip("_")
    if not ident:
        ident = fallback
    if ident[0].isdigit():
        ident = f"{fallback}_{ident}"
    return ident


def tenant_slug(name: str) -> str:
    return identifier(name, fallback="tenant", max_len=50)


def table_name(dataset_name: str, dataset_id: uuid.UUID) -> str:
    """``<name>_<first 8 hex of the id>``: readable and unique per dataset."""
    return f"{identifier(dataset_name, fallback='dataset')}_{dataset_id.hex[:8]}"
