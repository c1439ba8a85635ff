"""Data types of the ingest interface."""
from __future__ import annotations

from dataclasses import dataclass, field

SUPPORTED_FORMATS = ("csv", "tsv", "json", "ndjson", "parquet")


@dataclass(frozen=True)
class IngestSettings:
    duckdb_memory_limit: str = "512MB"
    duckdb_threads: int = 2
    temp_dir: str | None = None


@dataclass(frozen=True)
class SourceColumn:
    name: str  # column name as stored in the local Parquet file (the source name, made unique)
    type: str  # logical type: string, integer, double, boolean, date, timestamp, or the Arrow type text


@dataclass(frozen=True)
class ConvertResult:
    source_format: str
    row_count: int
    columns: list[SourceColumn] = field(default_factory=list)
    size_bytes: int = 0  # size of the written Parquet file
