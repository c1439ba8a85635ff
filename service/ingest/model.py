"""Data types of the ingest interface."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

SUPPORTED_FORMATS = ("csv", "tsv", "json", "ndjson", "parquet", "xlsx")
# Codec of the local Parquet files the converters write (see delimited._duckdb_copy).
LOCAL_PARQUET_CODEC = "snappy"


@dataclass(frozen=True)
class IngestSettings:
    duckdb_memory_limit: str = "512MB"
    duckdb_threads: int = 2
    temp_dir: str | None = None
    max_columns: int = 4096  # wider uploads are refused (422) before any naming work
    # Bytes a Parquet upload may decode to (its footer's uncompressed sizes, dictionaries
    # included); larger uploads are refused before a page is decoded.
    parquet_decode_budget: int = 512 << 20
    # Bytes a compressed upload (or a workbook's parts) may expand to, and the largest
    # expansion ratio past RATIO_FLOOR_BYTES (see unwrap.py): bombs get a 413 early.
    max_uncompressed_bytes: int = 1 << 30
    max_compression_ratio: int = 100
    max_bad_rows: int = 10_000  # rows an upload may set aside (bad_rows=quarantine)


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
    # What was detected, as reported to the uploader: the delimited dialect (delimiter,
    # quote, escape, header_line, encoding), the JSON records path, the compression, the sheet.
    dialect: dict | None = None
    records_path: str | None = None
    compression: str | None = None
    sheet: str | None = None
    bad_rows: list = field(default_factory=list)  # of service.ingest.badrows.BadRow


def logical_type(arrow_type: pa.DataType) -> str:
    """The logical name of an Arrow type (the vocabulary of ``SourceColumn.type``)."""
    t = arrow_type
    if pa.types.is_dictionary(t):  # an encoding, not a type (pandas categoricals)
        return logical_type(t.value_type)
    if isinstance(t, pa.BaseExtensionType) and getattr(t, "extension_name", "") == "arrow.json":
        return "json"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t) and t != pa.uint64():  # uint64 does not fit int64
        return "integer"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp"
    return str(t)
