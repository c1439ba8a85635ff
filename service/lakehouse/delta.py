"""The local lakehouse: Delta tables under LAKEHOUSE_DIR, written with ``deltalake``.

Data files are produced by the fastest safe route and then committed with one Delta
transaction (``create_table_with_add_actions``, mode="overwrite"):

- bronze: the three metadata columns are constant for a load, so they are the table's
  partition columns and live in the Delta log, not in the data file. When the local
  Parquet file only holds Delta-compatible column types it *is* the data file (hard-linked
  or copied, not re-encoded); otherwise it is rewritten batch by batch with converted types.
- silver: one DuckDB query reads the bronze data files, trims, nulls, casts (checking
  each value when the plan's types come from a sample), renames and removes duplicate
  rows, and writes one Parquet file with row groups encoded on all threads (spilling to
  disk within ``memory_limit``).

Each write replaces the table's current version; the data files of the replaced
version are then deleted, so re-running a sync does not accumulate files.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction, create_table_with_add_actions

from service.config import sync_duckdb
from service.lakehouse.base import (
    BronzeSource,
    LakehouseTarget,
    PermanentTargetError,
    TableRef,
    TableResult,
    TransientTargetError,
)
from service.duckdb_shared import remove_stale
from service.transform import sql as q
from service.transform.naming import RESERVED_NAMES
from service.transform.plan import SILVER_TYPES, SampledPlanRejected, SilverPlan

log = logging.getLogger(__name__)

BRONZE_META = ("_dataset_id", "_ingested_at", "_source_file")
SILVER_META = ("_dataset_id", "_ingested_at")
UTC_US = pa.timestamp("us", tz="UTC")

# Row groups above this size (uncompressed) make the local file unfit as a data file; it
# is then rewritten with row groups of about the target size.
BRONZE_MAX_ROW_GROUP_BYTES = 64 << 20
BRONZE_TARGET_ROW_GROUP_BYTES = 16 << 20

# Field metadata key naming the source column of a bronze column that had to be renamed.
SOURCE_NAME_KEY = "lakesync.source_name"

# Failures that may pass on their own: full or read-only disk, permissions being fixed,
# flaky storage.
TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name) for name in
    ("ENOSPC", "EROFS", "EACCES", "EPERM", "EIO", "EAGAIN", "EDQUOT") if hasattr(errno, name)
)
_TRANSIENT_TEXTS = tuple(os.strerror(code) for code in TRANSIENT_ERRNOS)
_OS_ERROR_CODE = re.compile(r"os error (\d+)|Os \{ code: (\d+)")

# Silver Parquet options. Snappy is the fastest codec to write and read. Dictionary
# encoding is kept for columns with few distinct values per row group (up to 4096
# entries, against a default of ROW_GROUP_SIZE/5): building a dictionary for a
# high-cardinality column only to abandon it took about a fifth of the write time.
# The writer buffers a whole row group, so wide tables get row groups capped in bytes.
SILVER_PARQUET_OPTIONS = ("FORMAT parquet, COMPRESSION snappy, DICTIONARY_SIZE_LIMIT 4096, "
                          "ROW_GROUP_SIZE_BYTES '32MB'")


class DeltaTarget(LakehouseTarget):
    name = "delta"
    checks_sampled_plans = True

    def __init__(self, lakehouse_dir: str | os.PathLike, *, duckdb_memory_limit: str = "512MB",
                 duckdb_threads: int = 2, temp_dir: str | os.PathLike | None = None):
        self.lakehouse_dir = os.path.abspath(os.fspath(lakehouse_dir))
        self.duckdb_memory_limit = str(duckdb_memory_limit)
        self.duckdb_threads = max(1, int(duckdb_threads))
        # DuckDB spills here when a query outgrows memory_limit.
        self.temp_dir = os.path.abspath(os.fspath(temp_dir)) if temp_dir is not None else \
            os.path.join(self.lakehouse_dir, ".tmp")

    @classmethod
    def from_config(cls, config: dict) -> "DeltaTarget":
        lakehouse_dir = config.get("LAKEHOUSE_DIR")
        if not lakehouse_dir:
            data_dir = config.get("DATA_DIR")
            if not data_dir:
                raise ValueError("LAKEHOUSE_DIR (or DATA_DIR) must be set for the delta target")
            lakehouse_dir = os.path.join(data_dir, "lakehouse")
        memory_limit, threads, temp_dir = sync_duckdb(config)
        return cls(lakehouse_dir, duckdb_memory_limit=memory_limit, duckdb_threads=threads, temp_dir=temp_dir)

    # ------------------------------------------------------------------ locations

    def location(self, ref: TableRef) -> str:
        for part in (ref.catalog, ref.schema, ref.table):
            if not part or part in (".", "..") or "/" in part or "\\" in part or "\0" in part:
                raise PermanentTargetError(f"invalid table name {ref.full_name!r}")
        return os.path.join(self.lakehouse_dir, ref.catalog, ref.schema, ref.table)

    # ------------------------------------------------------------------ bronze

    def write_bronze(self, ref: TableRef, source: BronzeSource) -> TableResult:
        path = self.location(ref)
        src = Path(source.parquet_path)
        with _target_errors(f"writing bronze table {ref.full_name}"):
            if not src.is_file():
                raise PermanentTargetError(f"source file {src} does not exist")
            try:
                metadata = pq.read_metadata(src)
                arrow_schema = metadata.schema.to_arrow_schema()
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise PermanentTargetError(f"source file {src} is not a readable Parquet file: {exc}") from exc
            physical = {column.path: column.physical_type for column in metadata.schema}

            fields, copy_as_is = _bronze_fields(arrow_schema, physical)
            groups = [metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)]
            # DuckDB holds a whole row group's pages while scanning it and gives it to one
            # thread: row groups far larger than usual (a very wide file) are rewritten.
            copy_as_is = copy_as_is and max(groups, default=0) <= BRONZE_MAX_ROW_GROUP_BYTES
            meta_fields = [pa.field("_dataset_id", pa.string()), pa.field("_ingested_at", UTC_US),
                           pa.field("_source_file", pa.string())]
            table_schema = pa.schema(fields + meta_fields)
            partition_values = {
                "_dataset_id": source.dataset_id or None,
                "_ingested_at": _partition_timestamp(source.ingested_at),
                "_source_file": source.source_file or None,
            }
            try:
                delta_schema = DeltaSchema.from_arrow(table_schema)
            except Exception as exc:  # a type Delta cannot store
                raise PermanentTargetError(f"source columns cannot be stored in Delta: {exc}") from exc

            with _staging(path) as staging:
                staged = os.path.join(staging, "data.parquet")
                if copy_as_is:
                    _link_or_copy(src, staged)
                else:
                    row_bytes = sum(groups) / max(1, metadata.num_rows)
                    rows_per_group = int(BRONZE_TARGET_ROW_GROUP_BYTES / max(1.0, row_bytes))
                    _rewrite_parquet(src, staged, pa.schema(fields),
                                     rows_per_group=min(max(rows_per_group, 1024), 122_880))
                rows = pq.read_metadata(staged).num_rows
                adds = _publish(path, [staged])
                _commit(path, delta_schema, adds, partition_by=list(BRONZE_META),
                        partition_values=partition_values)
            return TableResult(location=path, row_count=rows)

    # ------------------------------------------------------------------ silver

    def write_silver(self, bronze: TableRef, silver: TableRef, plan: SilverPlan) -> TableResult:
        bronze_path = self.location(bronze)
        path = self.location(silver)
        with _target_errors(f"writing silver table {silver.full_name}"):
            _validate_plan(plan)
            table = _open_table(bronze_path, bronze)
            bronze_rows = _count_rows(table, bronze_path)
            with contextlib.closing(q.connect(self.duckdb_memory_limit, self.duckdb_threads,
                                              self.temp_dir)) as con:
                scan = _bronze_scan(con, table, bronze_path)
                silver_sql = _silver_sql(con, plan, scan)
                with _staging(path) as staging:
                    out_file = os.path.join(staging, "data.parquet")
                    try:
                        _write_distinct(con, silver_sql, len(plan.columns), staging, out_file)
                    except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
                        if plan.verified:
                            raise
                        raise SampledPlanRejected(str(exc)) from exc
                    # The table schema is the written file's (DuckDB writes one even for no
                    # rows): asking DuckDB for the query's schema first cost a planning pass.
                    metadata = pq.read_metadata(out_file)
                    delta_schema = DeltaSchema.from_arrow(_nullable(metadata.schema.to_arrow_schema()))
                    files = [out_file] if metadata.num_rows > 0 else []
                    adds = _publish(path, files)
                    rows = sum(json.loads(a.stats)["numRecords"] for a in adds)
                    _commit(path, delta_schema, adds)
        return TableResult(location=path, row_count=rows, duplicates_removed=bronze_rows - rows)

    # ------------------------------------------------------------------ reading & admin

    def count_rows(self, ref: TableRef) -> int:
        path = self.location(ref)
        with _target_errors(f"counting rows of {ref.full_name}"):
            return _count_rows(_open_table(path, ref), path)

    def drop_table(self, ref: TableRef) -> None:
        path = self.location(ref)
        with _target_errors(f"dropping table {ref.full_name}"):
            try:
                shutil.rmtree(path)
            except FileNotFoundError:
                pass

    def ping(self) -> None:
        with _target_errors(f"checking lakehouse directory {self.lakehouse_dir}"):
            os.makedirs(self.lakehouse_dir, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.lakehouse_dir, prefix=".ping-"):
                pass


# ---------------------------------------------------------------------- bronze helpers

def _is_copyable(arrow_type: pa.DataType, physical_type: str | None) -> bool:
    """Whether a column of this Arrow type is stored in Parquet exactly as a Delta reader
    expects it, so the local file can be used as the data file without rewriting."""
    t = arrow_type
    if (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t) or pa.types.is_boolean(t)
            or pa.types.is_signed_integer(t) or pa.types.is_float32(t) or pa.types.is_float64(t)
            or pa.types.is_date32(t)):
        return True
    if pa.types.is_timestamp(t):
        # Delta reads INT64 microseconds; legacy INT96 timestamps must be rewritten.
        return t.unit == "us" and physical_type == "INT64"
    if pa.types.is_decimal128(t):
        return t.precision <= 38
    return False


def storable_type(t: pa.DataType) -> pa.DataType:
    """A type Delta can store that holds every value of ``t``."""
    if pa.types.is_dictionary(t):
        return storable_type(t.value_type)
    if pa.types.is_uint8(t):
        return pa.int16()
    if pa.types.is_uint16(t):
        return pa.int32()
    if pa.types.is_uint32(t):
        return pa.int64()
    if pa.types.is_uint64(t):
        return pa.decimal128(20, 0)
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz=None if t.tz is None else "UTC")
    if pa.types.is_date64(t):
        return pa.date32()
    if pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_binary_view(t) or pa.types.is_fixed_size_binary(t):
        return pa.binary()
    if pa.types.is_null(t) or pa.types.is_time(t) or pa.types.is_duration(t) or \
            pa.types.is_interval(t):
        return pa.string()
    if pa.types.is_decimal(t) and t.precision > 38:
        return pa.string()
    if isinstance(t, pa.BaseExtensionType):
        return storable_type(t.storage_type)
    return t


def _bronze_fields(schema: pa.Schema,
                   physical: dict[str, str]) -> tuple[list[pa.Field], bool]:
    """The bronze data fields for a source schema, and whether the source file can be
    used as it is.

    Names are kept, except that Delta refuses names equal when case is ignored and the
    metadata columns take their own names: such a column becomes ``<name>_<n>`` and
    records its source name in the field metadata.
    """
    used = {name.lower() for name in BRONZE_META}
    fields = []
    renamed = False
    copyable = True
    for field in schema:
        name = field.name
        if name.lower() in used:
            n = 2
            while f"{name}_{n}".lower() in used or \
                    any(f.name.lower() == f"{name}_{n}".lower() for f in schema):
                n += 1
            name = f"{name}_{n}"
            renamed = True
        used.add(name.lower())
        target = storable_type(field.type)
        copyable = copyable and target == field.type and \
            _is_copyable(field.type, physical.get(field.name))
        metadata = {SOURCE_NAME_KEY: field.name} if name != field.name else None
        fields.append(pa.field(name, target, nullable=True, metadata=metadata))
    return fields, copyable and not renamed


def _link_or_copy(src: Path, dest: str) -> None:
    """A hard link when both sit on one filesystem (the local file is never modified in
    place, only replaced or removed), else a copy."""
    try:
        os.link(src, dest)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        shutil.copyfile(src, dest)


def _rewrite_parquet(src: Path, dest: str, schema: pa.Schema, *, rows_per_group: int) -> None:
    """Copy ``src`` to ``dest`` batch by batch with the bronze names and types, one row
    group per batch."""
    # Unbuffered, single-threaded reading keeps memory near one batch plus the pages
    # being decoded.
    pf = pq.ParquetFile(src, pre_buffer=False, buffer_size=1 << 16)
    try:
        with pq.ParquetWriter(dest, schema, compression="snappy") as writer:
            for batch in pf.iter_batches(batch_size=rows_per_group, use_threads=False):
                columns = [_to_delta_array(column, field.type)
                           for column, field in zip(batch.columns, schema)]
                writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
    finally:
        pf.close()


def _to_delta_array(array: pa.Array, target: pa.DataType) -> pa.Array:
    if array.type == target:
        return array
    if pa.types.is_dictionary(array.type):
        return _to_delta_array(array.dictionary_decode(), target)
    if isinstance(array.type, pa.BaseExtensionType):
        return _to_delta_array(array.storage, target)
    if pa.types.is_timestamp(array.type) and pa.types.is_timestamp(target):
        # Delta stores microseconds; finer digits cannot be kept.
        return array.cast(target, safe=False)
    return array.cast(target)


def _partition_timestamp(value: datetime) -> str:
    """A timestamp partition value in the protocol's ISO 8601 UTC form, which readers do not
    reinterpret in a session time zone (a naive datetime is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------------- commit helpers

@contextlib.contextmanager
def _staging(table_path: str):
    """A private directory inside the table directory; Delta readers ignore dot-directories,
    and files renamed from it into the table are on the same filesystem."""
    os.makedirs(table_path, exist_ok=True)
    remove_stale(table_path, ".staging-")
    staging = os.path.join(table_path, f".staging-{uuid.uuid4().hex}")
    os.mkdir(staging)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class _Published(list):
    """Add actions for files moved into the table directory but not committed yet."""

    def __init__(self, table_path: str):
        super().__init__()
        self.table_path = table_path

    def discard(self) -> None:
        for add in self:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.table_path, add.path))


def _publish(table_path: str, files: list[str]) -> _Published:
    """Move staged Parquet files into the table directory under unique names."""
    adds = _Published(table_path)
    batch = uuid.uuid4()
    now_ms = int(time.time() * 1000)
    try:
        for i, staged in enumerate(files):
            rows = pq.read_metadata(staged).num_rows
            name = f"part-{i:05d}-{batch}-c000.parquet"
            final = os.path.join(table_path, name)
            os.rename(staged, final)
            adds.append(AddAction(path=name, size=os.path.getsize(final), partition_values={},
                                  modification_time=now_ms, data_change=True,
                                  stats=json.dumps({"numRecords": rows})))
    except BaseException:
        adds.discard()
        raise
    return adds


def _commit(table_path: str, schema: DeltaSchema, adds: _Published, *,
            partition_by: list[str] | None = None,
            partition_values: dict[str, str | None] | None = None) -> None:
    """Replace the table's current version with ``adds``, then delete the replaced files."""
    if partition_values:
        for add in adds:
            add.partition_values = dict(partition_values)
    previous = _current_files(table_path)
    try:
        create_table_with_add_actions(table_path, schema, list(adds), mode="overwrite",
                                      partition_by=partition_by or None)
    except BaseException:
        adds.discard()
        raise
    new = {add.path for add in adds}
    for rel in previous - new:
        try:
            os.remove(os.path.join(table_path, rel))
        except FileNotFoundError:
            pass
        except OSError as exc:  # the commit succeeded; an orphan file only costs disk space
            log.warning("could not delete replaced data file %s: %s", rel, exc)


def _current_files(table_path: str) -> set[str]:
    if not os.path.isdir(os.path.join(table_path, "_delta_log")):
        return set()
    try:
        table = DeltaTable(table_path)
    except DeltaError as exc:
        log.warning("could not read the current version of %s: %s", table_path, exc)
        return set()
    paths = pa.table(table.get_add_actions(flatten=True)).column("path").to_pylist()
    return {unquote(p) for p in paths}


def _nullable(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in schema])


# ---------------------------------------------------------------------- reading helpers

def _open_table(path: str, ref: TableRef) -> DeltaTable:
    if not os.path.isdir(os.path.join(path, "_delta_log")):
        raise PermanentTargetError(f"table {ref.full_name} does not exist")
    return DeltaTable(path)


def _count_rows(table: DeltaTable, path: str) -> int:
    actions = pa.table(table.get_add_actions(flatten=True))
    counts = actions.column("num_records").to_pylist() if "num_records" in actions.column_names \
        else [None] * actions.num_rows
    if all(c is not None for c in counts):
        return int(sum(counts))
    # Files written without statistics: count by scanning.
    return table.to_pyarrow_dataset().count_rows()


@dataclass
class _BronzeScan:
    sql: str  # a relation over the bronze table's current version
    fields: dict[str, pa.Field]  # the table's fields by name
    # SQL literals of partition columns holding one value for the whole table (the
    # metadata columns of a bronze load): they are added after DISTINCT, not hashed.
    constants: dict[str, str] = dataclass_field(default_factory=dict)


def _bronze_scan(con: duckdb.DuckDBPyConnection, table: DeltaTable, path: str) -> _BronzeScan:
    """How to read the bronze table's current version.

    The data files are read by DuckDB's own Parquet reader (parallel, within
    memory_limit) with the partition values added as constants. Tables using features
    that reader cannot honour (deletion vectors, column mapping...) go through the
    ``deltalake`` PyArrow dataset instead.
    """
    schema = pa.schema(table.schema().to_arrow())
    fields = {f.name: f for f in schema}
    native = _native_scan(table, path, schema)
    if native is not None:
        sql, constants = native
        return _BronzeScan(sql, fields, constants)
    con.register("bronze_dataset", table.to_pyarrow_dataset())
    return _BronzeScan("bronze_dataset", fields)


def _native_scan(table: DeltaTable, path: str,
                 schema: pa.Schema) -> tuple[str, dict[str, str]] | None:
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
            value = value.replace(tzinfo=timezone.utc)
        return f"TIMESTAMPTZ {q.quote_literal(value.astimezone(timezone.utc).isoformat())}"
    return None


# ---------------------------------------------------------------------- silver helpers

def _validate_plan(plan: SilverPlan) -> None:
    if not plan.columns:
        raise PermanentTargetError("the silver plan has no columns")
    seen: set[str] = set()
    for column in plan.columns:
        if column.type not in SILVER_TYPES and column.type != "source":
            raise PermanentTargetError(
                f"silver plan: column {column.source_name!r} has unknown type {column.type!r}")
        if not column.name or column.name in RESERVED_NAMES:
            raise PermanentTargetError(f"silver plan: invalid column name {column.name!r}")
        key = column.name.lower()
        if key in seen:
            raise PermanentTargetError(f"silver plan: duplicate column name {column.name!r}")
        seen.add(key)


def _bronze_column(source_name: str, fields: dict[str, pa.Field]) -> pa.Field:
    for field in fields.values():
        meta = field.metadata or {}
        if meta.get(SOURCE_NAME_KEY.encode()) == source_name.encode():
            return field
    field = fields.get(source_name)
    if field is None or (source_name in BRONZE_META and not field.metadata):
        raise PermanentTargetError(
            f"silver plan: column {source_name!r} is not in the bronze table")
    return field


def _is_string_type(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _tokens_castable(tokens: list[str]) -> set[str]:
    """Planned types to which some null token casts; values of those columns are compared
    with the tokens before casting."""
    checks = tuple((name, f"TRY_CAST(t AS {q.DUCKDB_TYPES[name]}) IS NOT NULL")
                   for name in q.DUCKDB_TYPES if name != "string")
    return set(q.tokens_passing(tuple(tokens), checks))


def _silver_sql(con: duckdb.DuckDBPyConnection, plan: SilverPlan, scan: _BronzeScan) -> "_SilverSQL":
    """The plan applied to the bronze rows, in SQL."""
    tokens = list(plan.null_tokens)
    # Verified plans cast leniently first (TRY_CAST), so a token that casts must be
    # compared first; sampled plans check each value's grammar first, so only a token
    # that fits a grammar must (none of the default tokens does).
    token_first = _tokens_castable(tokens) if plan.verified else \
        q.tokens_fitting(tokens, q.TYPE_CODES)
    inner, outer = [], []
    for i, column in enumerate(plan.columns):
        field = _bronze_column(column.source_name, scan.fields)
        src = q.quote_ident(field.name)
        alias = f"s{i}"
        out = q.quote_ident(column.name)
        is_string = _is_string_type(field.type) and column.source_type != "json"
        if column.type == "source" or (column.type == "string" and not is_string):
            # Kept as it is (JSON text and non-string sources): no trim, no null tokens.
            expr = alias if column.type == "source" else f"CAST({alias} AS VARCHAR)"
            inner.append(f"{src} AS {alias}")
        elif column.type == "string":
            # Only padded values pay for trim(), which copies every string it touches.
            inner.append(f"CASE WHEN {src} LIKE ' %' OR {src} LIKE '% ' THEN {q.trim_spaces(src)} "
                         f"ELSE {src} END AS {alias}")
            expr = f"if({q.is_token(alias, tokens)}, NULL, {alias})" if tokens else alias
        elif not is_string:
            inner.append(f"{src} AS {alias}")
            expr = f"CAST({alias} AS {q.DUCKDB_TYPES[column.type]})"
        else:
            inner.append(f"{src} AS {alias}")
            if plan.verified:
                expr = _typed_from_string(alias, column.type, tokens, column.type in token_first)
            else:
                # The type comes from a sample: every value is checked against the grammar,
                # and the first one that does not fit stops the write (SampledPlanRejected).
                expr = q.silver_typed_expr(alias, column.type, tokens, column.type in token_first,
                                           column.name)
        outer.append(f"{expr} AS {out}")

    constant = {m: scan.constants[m] for m in SILVER_META if m in scan.constants}
    carried = [q.quote_ident(m) for m in SILVER_META if m not in constant]
    select = (f"SELECT {', '.join(outer + carried)} "
              f"FROM (SELECT {', '.join(inner + carried)} FROM {scan.sql})")
    order = ", ".join(q.quote_ident(c.name) for c in plan.columns)
    meta = ", ".join(f"{constant[m]} AS {q.quote_ident(m)}" if m in constant else q.quote_ident(m)
                     for m in SILVER_META)
    return _SilverSQL(select=select, columns=f"{order}, {meta}")


@dataclass
class _SilverSQL:
    select: str  # the plan applied to every bronze row (constant metadata left out)
    columns: str  # the silver columns in order, constant metadata as literals

    def over(self, body: str) -> str:
        return f"SELECT {self.columns} FROM ({body})"


# Rows of more columns than this are deduplicated by row hash (see _write_distinct).
WIDE_TABLE_COLUMNS = 64
_ROW_HASH = "__lakesync_row_hash"


def _copy(con: duckdb.DuckDBPyConnection, query: str, out_file: str) -> None:
    # One output file: DuckDB still encodes row groups on all threads, and unlike
    # PER_THREAD_OUTPUT this mode fails cleanly when the disk fills up (the per-thread
    # writer was seen to crash or hang on ENOSPC).
    con.execute(f"COPY ({query}) TO {q.quote_literal(out_file)} ({SILVER_PARQUET_OPTIONS})").fetchall()


def _write_distinct(con: duckdb.DuckDBPyConnection, silver_sql: _SilverSQL, column_count: int,
                    staging: str, out_file: str) -> None:
    """Write the distinct silver rows to ``out_file``.

    A plain DISTINCT is one pass and the fastest, but its hash table holds whole rows, and
    with hundreds of columns it does not fit in memory_limit even when spilling. Wide rows
    are therefore written as they are, then hashed from that file: rows whose hash occurs
    once are certainly unique, and only when some hash is shared is the file rewritten,
    with an exact DISTINCT over the rows sharing one. The plan is applied once either way.
    """
    if column_count <= WIDE_TABLE_COLUMNS:
        _copy(con, silver_sql.over(f"SELECT DISTINCT * FROM ({silver_sql.select})"), out_file)
        return
    every_row = os.path.join(staging, "rows.parquet")
    _copy(con, silver_sql.over(silver_sql.select), every_row)
    rows = f"read_parquet({q.quote_literal(every_row)})"
    con.execute("CREATE OR REPLACE TEMP TABLE shared_hashes AS SELECT h FROM "
                f"(SELECT hash(*COLUMNS(*)) AS h FROM {rows}) GROUP BY h HAVING count(*) > 1").fetchall()
    if con.execute("SELECT count(*) FROM shared_hashes").fetchone()[0] == 0:
        os.rename(every_row, out_file)
        return
    hashed = f"SELECT *, hash(*COLUMNS(*)) AS {_ROW_HASH} FROM {rows}"
    _copy(con, f"SELECT * EXCLUDE ({_ROW_HASH}) FROM ({hashed}) "
               f"WHERE {_ROW_HASH} NOT IN (SELECT h FROM shared_hashes) "
               f"UNION ALL "
               f"SELECT DISTINCT * EXCLUDE ({_ROW_HASH}) FROM ({hashed}) "
               f"WHERE {_ROW_HASH} IN (SELECT h FROM shared_hashes)", out_file)


def _typed_from_string(col: str, type_name: str, tokens: list[str], token_first: bool) -> str:
    """Trim, null tokens and cast a string value. The plan's type comes from a strict
    grammar every value fits, so DuckDB's cast (which also trims) gives the same value;
    a value that still does not cast raises instead of becoming NULL."""
    duck = q.DUCKDB_TYPES[type_name]
    trimmed = q.trim_spaces(col)
    is_token = q.is_token(trimmed, tokens)
    if type_name == "boolean":
        exact = f"CASE lower({trimmed}) WHEN 'true' THEN true WHEN 'false' THEN false " \
                f"ELSE CAST({trimmed} AS BOOLEAN) END"
    else:
        exact = f"CAST({trimmed} AS {duck})"
    slow = f"CASE WHEN {col} IS NULL OR {is_token} THEN NULL ELSE {exact} END"
    fast = f"TRY_CAST({col} AS {duck})"
    if token_first:
        # Some token casts (nan to double): only an unpadded value that is not a token
        # may be cast as it is; trimming and comparing every value first made the cast
        # several times slower.
        plain = f"NOT ({col} LIKE ' %' OR {col} LIKE '% ' OR {q.is_token(col, tokens)})"
        fast = f"CASE WHEN {plain} THEN {fast} END"
    # TRY_CAST is vectorised (and dictionary-aware); only values it rejects, which
    # should be nulls and null tokens, take the slow path.
    return f"COALESCE({fast}, {slow})"


# ---------------------------------------------------------------------- errors

def _errno_of(exc: BaseException) -> int | None:
    code = getattr(exc, "errno", None)
    if isinstance(code, int):
        return code
    match = _OS_ERROR_CODE.search(str(exc))
    if match:
        return int(match.group(1) or match.group(2))
    return None


def _looks_transient(exc: BaseException) -> bool:
    code = _errno_of(exc)
    if code is not None:
        return code in TRANSIENT_ERRNOS
    text = str(exc)
    return any(t in text for t in _TRANSIENT_TEXTS)


@contextlib.contextmanager
def _target_errors(action: str):
    """Map storage and engine failures to the target's transient/permanent errors."""
    try:
        yield
    except (TransientTargetError, PermanentTargetError, SampledPlanRejected):
        raise
    except CommitFailedError as exc:
        raise TransientTargetError(f"{action}: the commit conflicted with another writer: {exc}") from exc
    except DeltaError as exc:
        if _looks_transient(exc):
            raise TransientTargetError(f"{action}: {exc}") from exc
        raise PermanentTargetError(f"{action}: {exc}") from exc
    except duckdb.OutOfMemoryException as exc:
        raise TransientTargetError(f"{action}: out of memory: {exc}") from exc
    except duckdb.IOException as exc:
        if _looks_transient(exc):
            raise TransientTargetError(f"{action}: {exc}") from exc
        raise PermanentTargetError(f"{action}: {exc}") from exc
    except duckdb.Error as exc:  # conversion, binder, invalid input: the plan does not fit
        raise PermanentTargetError(f"{action}: {exc}") from exc
    except OSError as exc:
        if _looks_transient(exc):
            raise TransientTargetError(f"{action}: {exc}") from exc
        raise PermanentTargetError(f"{action}: {exc}") from exc
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise PermanentTargetError(f"{action}: {exc}") from exc
