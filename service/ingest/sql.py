"""DuckDB connections configured from the ingest settings."""
from __future__ import annotations

import contextlib
from pathlib import Path

import duckdb

from service.ingest.model import IngestSettings


def sql_string(value: str) -> str:
    """A SQL string literal (DuckDB does not treat backslashes specially)."""
    return "'" + value.replace("'", "''") + "'"


@contextlib.contextmanager
def connect(settings: IngestSettings):
    config = {
        "threads": max(1, int(settings.duckdb_threads)),
        "memory_limit": settings.duckdb_memory_limit,
        # Everything ingest needs is built in; never reach the network for an extension.
        "autoinstall_known_extensions": False,
    }
    if settings.temp_dir:
        Path(settings.temp_dir).mkdir(parents=True, exist_ok=True)
        config["temp_directory"] = settings.temp_dir
    con = duckdb.connect(":memory:", config=config)
    try:
        yield con
    finally:
        con.close()
