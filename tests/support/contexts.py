"""Sync contexts for tests that call a lakehouse target directly."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from service.lakehouse.base import SyncContext, TableRef

INGESTED = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)


def sync_context(
    source_path: str | Path | None,
    *,
    bronze: TableRef,
    silver: TableRef | None = None,
    dataset_id: str = "ds-1",
    tenant_id: str = "tenant-1",
    source_file: str = "sales.csv",
    ingested_at: dt.datetime = INGESTED,
) -> SyncContext:
    """A context for one dataset's tables; ``silver`` defaults to bronze's name in schema silver."""
    return SyncContext(
        dataset_id=dataset_id,
        tenant_id=tenant_id,
        run_id="run-1",
        dataset_name=bronze.table,
        bronze=bronze,
        silver=silver or TableRef(bronze.catalog, "silver", bronze.table),
        source_path=Path(source_path or "unused.parquet"),
        source_file=source_file,
        ingested_at=ingested_at,
    )
