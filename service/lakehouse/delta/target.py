"""The Delta lakehouse: tables under LAKEHOUSE_URL (a local directory or an s3:// prefix),
written with ``deltalake``.

Data files are produced by the fastest safe route and then committed with one Delta
transaction (``create_table_with_add_actions``, mode="overwrite"):

- bronze: the three metadata columns are constant for a load, so they are the table's
  partition columns and live in the Delta log, not in the data file. When the local
  Parquet file only holds Delta-compatible column types it *is* the data file (hard-linked
  or copied, not re-encoded); otherwise it is rewritten batch by batch with converted types.
- silver: one DuckDB query (``service.lakehouse.duckdb_sql``) reads the bronze data files,
  trims, nulls, casts, renames and removes duplicate rows, and writes one Parquet file. A
  small dataset's plan is applied in Arrow instead (``arrow_silver``), to the rows bronze
  holds as they are: the dataset's file, with the load's metadata values.

Each write replaces the table's current version; the data files of the replaced
version are then deleted, so re-running a sync does not accumulate files.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import Schema as DeltaSchema

from service.config import lakehouse_url, sync_duckdb
from service.lakehouse import arrow_silver, duckdb_sql
from service.lakehouse.base import (
    LakehouseTarget,
    PermanentTargetError,
    SyncContext,
    TableRef,
    TableResult,
    TableState,
    TableStates,
)
from service.lakehouse.delta import bronze as bronze_files
from service.lakehouse.delta.commit import commit, nullable, publish
from service.lakehouse.delta.errors import target_errors
from service.lakehouse.delta.scan import bronze_scan, count_rows, open_table
from service.lakehouse.delta.tables import TableStore
from service.storage import S3Settings
from service.table_rules import (
    BRONZE_META,
    BRONZE_META_FIELDS,
    QUARANTINE_FIELDS,
    SILVER_META,
    meta_columns,
    quarantine_columns,
)
from service.transform import arrow_types
from service.transform import sql as q
from service.transform.plan import SampledPlanRejected, SilverPlan


def _meta_partitions(ctx: SyncContext) -> dict:
    """Bronze's metadata columns are constant for a load: partition values in the Delta log."""
    return dict(
        zip(
            BRONZE_META,
            (
                ctx.dataset_id or None,
                bronze_files.partition_timestamp(ctx.ingested_at),
                ctx.source_file or None,
            ),
            strict=True,
        )
    )


def _small_bronze_rows(ctx: SyncContext, plan: SilverPlan) -> pa.Table | None:
    """Bronze's rows, for a small dataset whose plan Arrow applies in full (``arrow_silver``);
    else None.

    Such a dataset's bronze data file is its Parquet file as it is (string columns, no
    renamed names), with the load's constant metadata columns as partition values: the
    rows are read from the file silver is given (``ctx.source_path``) and the metadata
    columns added from the context, which costs less than opening the bronze table.
    """
    if ctx.source_path is None:
        return None
    try:
        metadata = pq.read_metadata(ctx.source_path)
        schema = metadata.schema.to_arrow_schema()
    except (OSError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # the bronze table's own reading says what is wrong
    physical = {column.path: column.physical_type for column in metadata.schema}
    data_fields, as_is = bronze_files.bronze_fields(schema, physical)
    fields = {f.name: f for f in (*data_fields, *BRONZE_META_FIELDS)}
    if not as_is or not arrow_silver.applies(plan, fields, metadata.num_rows):
        return None
    rows = ctx.source_rows if ctx.source_rows is not None else arrow_types.read_small_parquet(ctx.source_path)
    if rows is None:
        return None
    meta = meta_columns(ctx.dataset_id, ctx.ingested_at, ctx.source_file, rows.num_rows)
    for name in SILVER_META:
        rows = rows.append_column(fields[name], meta[name])
    return rows


class DeltaTarget(LakehouseTarget):
    name = "delta"
    checks_sampled_plans = True

    def __init__(
        self,
        lakehouse: str | os.PathLike,
        *,
        duckdb_memory_limit: str = "512MB",
        duckdb_threads: int = 2,
        temp_dir: str | os.PathLike | None = None,
        s3_settings: S3Settings | None = None,
    ):
        url = os.fspath(lakehouse)
        self.duckdb_memory_limit = str(duckdb_memory_limit)
        self.duckdb_threads = max(1, int(duckdb_threads))
        # DuckDB spills here when a query outgrows memory_limit; object-store staging too.
        default_temp = os.path.join(os.path.abspath(url), ".tmp") if not url.startswith("s3://") else None
        if temp_dir is None and default_temp is None:
            raise ValueError("a local temp_dir is needed for a lakehouse on an object store")
        self.temp_dir = os.path.abspath(os.fspath(temp_dir)) if temp_dir is not None else str(default_temp)
        self.tables = TableStore(url, s3_settings, temp_dir=os.path.join(self.temp_dir, "delta"))
        self.lakehouse_dir = self.tables.url  # a path, or the s3:// URL

    @classmethod
    def from_config(cls, config: dict) -> DeltaTarget:
        if not (config.get("LAKEHOUSE_URL") or config.get("LAKEHOUSE_DIR") or config.get("DATA_DIR")):
            raise ValueError("LAKEHOUSE_URL (or LAKEHOUSE_DIR, or DATA_DIR) must be set for the delta target")
        memory_limit, threads, temp_dir = sync_duckdb(config)
        return cls(
            lakehouse_url(config),
            duckdb_memory_limit=memory_limit,
            duckdb_threads=threads,
            temp_dir=temp_dir,
            s3_settings=S3Settings.from_config(config),
        )

    def location(self, ref: TableRef) -> str:
        """The table's location: ``<lakehouse>/<catalog>/<schema>/<table>``."""
        return self.tables.uri(ref)

    # ------------------------------------------------------------------ bronze

    def write_bronze(self, ctx: SyncContext) -> TableResult:
        ref = ctx.bronze
        path = self.location(ref)
        if ctx.source_path is None:
            raise PermanentTargetError("write_bronze needs the dataset's file as a local path")
        src = Path(ctx.source_path)
        with target_errors(f"writing bronze table {ref.full_name}"):
            if not src.is_file():
                raise PermanentTargetError(f"source file {src} does not exist")
            try:
                metadata = pq.read_metadata(src)
                arrow_schema = metadata.schema.to_arrow_schema()
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise PermanentTargetError(f"source file {src} is not a readable Parquet file: {exc}") from exc
            physical = {column.path: column.physical_type for column in metadata.schema}

            fields, copy_as_is = bronze_files.bronze_fields(arrow_schema, physical)
            groups = [metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)]
            # DuckDB holds a whole row group's pages while scanning it and gives it to one
            # thread: row groups far larger than usual (a very wide file) are rewritten.
            copy_as_is = copy_as_is and max(groups, default=0) <= bronze_files.BRONZE_MAX_ROW_GROUP_BYTES
            table_schema = pa.schema(fields + list(BRONZE_META_FIELDS))
            partition_values = _meta_partitions(ctx)
            try:
                delta_schema = DeltaSchema.from_arrow(table_schema)
            except Exception as exc:  # a type Delta cannot store
                raise PermanentTargetError(f"source columns cannot be stored in Delta: {exc}") from exc

            with self.tables.staging(path) as staging_dir:
                staged = os.path.join(staging_dir, "data.parquet")
                if copy_as_is:
                    bronze_files.link_or_copy(src, staged)
                else:
                    row_bytes = sum(groups) / max(1, metadata.num_rows)
                    rows_per_group = int(bronze_files.BRONZE_TARGET_ROW_GROUP_BYTES / max(1.0, row_bytes))
                    bronze_files.rewrite_parquet(
                        src, staged, pa.schema(fields), rows_per_group=min(max(rows_per_group, 1024), 122_880)
                    )
                rows = pq.read_metadata(staged).num_rows
                self._commit_load(path, delta_schema, staged, partition_values)
            return TableResult(table=ref, location=path, row_count=rows)

    def _commit_load(self, path: str, schema: DeltaSchema, staged: str, partition_values: dict) -> None:
        """Replace the table with one staged file of a load, partitioned by the metadata columns."""
        adds = publish(self.tables, path, [staged])
        commit(self.tables, path, schema, adds, partition_by=list(BRONZE_META), partition_values=partition_values)

    def write_quarantine(self, ctx: SyncContext, table: TableRef, rows: list[dict]) -> TableResult:
        """The bad rows as a small Delta table with bronze's metadata columns."""
        path = self.location(table)
        data = pa.Table.from_arrays(quarantine_columns(rows), schema=pa.schema(QUARANTINE_FIELDS))
        delta_schema = DeltaSchema.from_arrow(pa.schema(list(data.schema) + list(BRONZE_META_FIELDS)))
        with target_errors(f"writing quarantine table {table.full_name}"), self.tables.staging(path) as staging_dir:
            staged = os.path.join(staging_dir, "data.parquet")
            pq.write_table(data, staged)
            self._commit_load(path, delta_schema, staged, _meta_partitions(ctx))
        return TableResult(table=table, location=path, row_count=data.num_rows)

    # ------------------------------------------------------------------ silver

    def write_silver(self, ctx: SyncContext, plan: SilverPlan) -> TableResult:
        bronze, silver = ctx.bronze, ctx.silver
        bronze_path = self.location(bronze)
        path = self.location(silver)
        with target_errors(f"writing silver table {silver.full_name}"):
            duckdb_sql.validate_plan(plan)
            if not self.tables.is_table(bronze_path):
                raise PermanentTargetError(f"table {bronze.full_name} does not exist")
            rows = _small_bronze_rows(ctx, plan)
            if rows is not None:
                return self._write_silver_arrow(rows, silver, path, plan)
            table = self.tables.open(bronze_path)
            with (
                self.tables.local_files(table, bronze_path) as bronze_files_dir,
                contextlib.closing(q.connect(self.duckdb_memory_limit, self.duckdb_threads, self.temp_dir)) as con,
            ):
                scan = bronze_scan(con, table, bronze_files_dir)
                silver_sql = duckdb_sql.silver_sql(con, plan, scan)
                with self.tables.staging(path) as staging_dir:
                    out_file = os.path.join(staging_dir, "data.parquet")
                    try:
                        duckdb_sql.write_distinct(con, silver_sql, plan, ctx.row_count, staging_dir, out_file)
                    except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
                        if plan.verified:
                            raise
                        raise SampledPlanRejected(str(exc)) from exc
                    # The table schema is the written file's (DuckDB writes one even for no
                    # rows): asking DuckDB for the query's schema first cost a planning pass.
                    rescued = duckdb_sql.count_rescued(con, out_file) if plan.rescues else None
                    rows = self._commit_silver(path, out_file)
        return TableResult(table=silver, location=path, row_count=rows, values_rescued=rescued)

    def _write_silver_arrow(self, bronze: pa.Table, silver: TableRef, path: str, plan: SilverPlan) -> TableResult:
        """Silver of a small bronze table, applied in Arrow (see ``arrow_silver``)."""
        rows = arrow_silver.silver_table(bronze, plan)
        with self.tables.staging(path) as staging_dir:
            out_file = os.path.join(staging_dir, "data.parquet")
            pq.write_table(rows, out_file, compression="snappy")
            count = self._commit_silver(path, out_file)
        return TableResult(table=silver, location=path, row_count=count)

    def _commit_silver(self, path: str, out_file: str) -> int:
        """Replace the silver table with the written file; its row count."""
        # The table schema is the written file's (DuckDB writes one even for no rows).
        metadata = pq.read_metadata(out_file)
        delta_schema = DeltaSchema.from_arrow(nullable(metadata.schema.to_arrow_schema()))
        files = [out_file] if metadata.num_rows > 0 else []
        adds = publish(self.tables, path, files)
        commit(self.tables, path, delta_schema, adds)
        return sum(json.loads(a.stats)["numRecords"] for a in adds)

    # ------------------------------------------------------------------ reading & admin

    def count_rows(self, ref: TableRef) -> int:
        path = self.location(ref)
        with target_errors(f"counting rows of {ref.full_name}"):
            return count_rows(open_table(self.tables, path, ref), path)

    def read_back(self, ctx: SyncContext) -> TableStates:
        def state(ref: TableRef) -> TableState:
            path = self.location(ref)
            with target_errors(f"reading table {ref.full_name}"):
                exists = self.tables.is_table(path)
            if not exists:
                return TableState(ref, exists=False, location=path)
            return TableState(ref, exists=True, location=path, row_count=self.count_rows(ref))

        return TableStates(bronze=state(ctx.bronze), silver=state(ctx.silver))

    def drop_tables(self, ctx: SyncContext, tables: list[TableRef]) -> None:
        for ref in tables:
            path = self.location(ref)
            with target_errors(f"dropping table {ref.full_name}"):
                self.tables.drop(path)

    def ping(self) -> None:
        with target_errors(f"checking lakehouse {self.lakehouse_dir}"):
            self.tables.ping()

    def describe(self) -> dict:
        return {"target": self.name, "storage": "s3" if self.tables.remote else "local"}
