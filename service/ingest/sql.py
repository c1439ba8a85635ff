"""DuckDB connections configured from the ingest settings."""

from __future__ import annotations

import contextlib

from service import duckdb_shared
from service.ingest.model import IngestSettings


def sql_string(value: str) -> str:
    """A SQL string literal (DuckDB does not treat backslashes specially)."""
    return "'" + value.replace("'", "''") + "'"


@contextlib.contextmanager
def connect(settings: IngestSettings):
    """A cursor on the process's ingest database (see service.duckdb_shared)."""
    config = {"threads": max(1, int(settings.duckdb_threads)), "memory_limit": settings.duckdb_memory_limit}
    with duckdb_shared.cursor(config, settings.temp_dir) as con:
        yield con
