"""Reading a Delta table's current version: row counts, and the scan DuckDB runs over it."""

from __future__ import annotations

import os
from datetime import UTC
from urllib.parse import unquote

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from deltalake import DeltaTable

from service.lakehouse.base import PermanentTargetError, TableRef
from service.lakehouse.delta.tables import TableStore
from service.lakehouse.duckdb_sql import BronzeScan
from service.transform import sql as q


def open_table(tables: TableStore, uri: str, ref: TableRef) -> DeltaTable:
    if not tables.is_table(uri):
        raise PermanentTargetError(f"table {ref.full_name} does not exist")
    return tables.open(uri)


def count_rows(table: DeltaTable, path: str) -> int:
    actions = pa.table(table.get_add_actions(flatten=True))
    counts = (
        actions.column("num_records").to_pylist()
        if "num_records" in actions.column_names
        else [None] * actions.num_rows
    )
    if all(c is not None for c in counts):
        return int(sum(counts))
    # Files written without statistics: count by scanning.
    return table.to_pyarrow_dataset().count_rows()


# Rows per batch of a bronze table read through its PyArrow dataset.
SCAN_BATCH_ROWS = 64 * 1024


def bronze_scan(con: duckdb.DuckDBPyConnection, table: DeltaTable, path: str, *, local: bool = True) -> BronzeScan:
    """How to read the bronze table's current version.

    The data files are read by DuckDB's own Parquet reader (parallel, within
    memory_limit) with the partition values added as constants. Tables using features
    that reader cannot honour (deletion vectors, column mapping...), or asked for with
    ``local=False``, go through the ``deltalake`` PyArrow dataset instead. A table on an
    object store is read from a local copy of its data files (``TableStore.local_files``):
    DuckDB reads object stores only with its httpfs extension, which it may not load.
    """
    schema = pa.schema(table.schema().to_arrow())
    fields = {f.name: f for f in schema}
    native = _native_scan(table, path, schema) if local else None
    if native is not None:
        sql, constants = native
        return BronzeScan(sql, fields, constants)
    # One pass over modest batches, read ahead a little: given the dataset itself, DuckDB
    # asks for batches of a million rows, many at a time, and the worker outgrew its memory.
    # The silver query scans the bronze table once, so a reader is enough.
    scanner = table.to_pyarrow_dataset().scanner(
        batch_size=SCAN_BATCH_ROWS,
        batch_readahead=1,
        fragment_readahead=1,
        fragment_scan_options=pads.ParquetFragmentScanOptions(pre_buffer=False),
    )
    con.register("bronze_dataset", scanner.to_reader())
    return BronzeScan("bronze_dataset", fields)


def _native_scan(table: DeltaTable, path: str, schema: pa.Schema) -> tuple[str, dict[str, str]] | None:
    protocol = table.protocol()
    features = set(protocol.reader_features or [])
    if protocol.min_reader_version > 3 or features - {"timestampNtz"}:
        return None
    mapping = table.metadata().configuration.get("delta.columnMapping.mode", "none")
    if mapping not in (None, "none"):
        return None
    partition_columns = list(table.metadata().partition_columns)
    data_columns = [f.name for f in schema if f.name not in partition_columns]
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return None

    groups: dict[tuple, list[str]] = {}
    for row in actions.to_pylist():
        values = tuple(row.get(f"partition.{c}") for c in partition_columns)
        groups.setdefault(values, []).append(os.path.join(path, unquote(row["path"])))

    selects = []
    literal_groups = []
    for values, files in groups.items():
        for file in files:
            if not set(data_columns) <= set(pq.read_schema(file).names):
                return None  # an older file without a later column
        literals = {}
        for name, value in zip(partition_columns, values):
            literal = _partition_literal(value, schema.field(name).type)
            if literal is None:
                return None
            literals[name] = literal
        literal_groups.append(literals)
        file_list = "[" + ", ".join(q.quote_literal(f) for f in files) + "]"
        columns = [q.quote_ident(c) for c in data_columns]
        columns += [f"{lit} AS {q.quote_ident(name)}" for name, lit in literals.items()]
        selects.append(f"SELECT {', '.join(columns)} FROM read_parquet({file_list})")
    constants = literal_groups[0] if len(literal_groups) == 1 else {}
    return "(" + " UNION ALL ".join(selects) + ")", constants


def _partition_literal(value, arrow_type: pa.DataType) -> str | None:
    """A DuckDB literal for a partition value, or None when the type is not handled."""
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "NULL::VARCHAR" if value is None else q.quote_literal(str(value))
    if pa.types.is_timestamp(arrow_type) and arrow_type.tz is not None:
        if value is None:
            return "NULL::TIMESTAMPTZ"
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return f"TIMESTAMPTZ {q.quote_literal(value.astimezone(UTC).isoformat())}"
    return None
