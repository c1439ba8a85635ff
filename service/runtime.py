"""What each process builds once from its app's config: the file store, the DuckDB
settings of conversions and of sync steps, and the lakehouse target.

``create_app`` stores it as ``app.extensions["lakesync"]``; code running in an app
context reaches it through ``runtime()``.
"""

from __future__ import annotations

import threading
from pathlib import Path

from flask import current_app

from service.config import sync_duckdb
from service.ingest import IngestSettings
from service.ingest.badrows import DEFAULT_MAX_BAD_ROWS
from service.ingest.columns import DEFAULT_MAX_COLUMNS
from service.lakehouse import LakehouseTarget, get_target
from service.storage import FileStore, file_store


class Runtime:
    def __init__(self, config: dict):
        self.config = config
        self.store: FileStore = file_store(config)
        # The API's conversions.
        self.ingest_settings = IngestSettings(
            duckdb_memory_limit=str(config["DUCKDB_MEMORY_LIMIT"]),
            duckdb_threads=int(config["DUCKDB_THREADS"]),
            temp_dir=str(Path(config["DATA_DIR"]) / "tmp"),
            max_columns=int(config.get("MAX_COLUMNS") or DEFAULT_MAX_COLUMNS),
            parquet_decode_budget=int(config.get("PARQUET_DECODE_BUDGET_MB") or 256) << 20,
            max_uncompressed_bytes=int(config.get("MAX_UNCOMPRESSED_MB") or 4096) << 20,
            max_compression_ratio=int(config.get("MAX_COMPRESSION_RATIO") or 100),
            max_bad_rows=int(config.get("MAX_BAD_ROWS") or DEFAULT_MAX_BAD_ROWS),
        )
        # The worker's steps: the same database as the Delta target's (inference and writes).
        memory_limit, threads, temp_dir = sync_duckdb(config)
        self.sync_settings = IngestSettings(duckdb_memory_limit=memory_limit, duckdb_threads=threads, temp_dir=temp_dir)
        self._target: LakehouseTarget | None = None
        self._target_lock = threading.Lock()

    def target(self) -> LakehouseTarget:
        """The lakehouse target named by SYNC_TARGET, built on first use: an API process that
        never syncs never needs its credentials."""
        with self._target_lock:
            if self._target is None:
                self._target = get_target(self.config)
            return self._target


def runtime() -> Runtime:
    """The current app's runtime."""
    return current_app.extensions["lakesync"]
