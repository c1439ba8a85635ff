"""The local lakehouse: Delta tables under LAKEHOUSE_DIR, written with ``deltalake``.

Data files are produced by the fastest safe route and then committed with one Delta
transaction (``create_table_with_add_actions``, mode="overwrite"):

- bronze: the three metadata columns are constant for a load, so they are the table's
  partition columns and live in the Delta log, not in the data file. When the local
  Parquet file only holds Delta-compatible column types it *is* the data file (hard-linked
  or copied, not re-encoded); otherwise it is rewritten batch by batch with converted types.
- silver: one DuckDB query (``service.lakehouse.duckdb_sql``) reads the bronze data files,
  trims, nulls, casts, renames and removes duplicate rows, and writes one Parquet file.

Each write replaces the table's current version; the data files of the replaced
version are then deleted, so re-running a sync does not accumulate files.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import Schema as DeltaSchema

from service.config import sync_duckdb
from service.lakehouse import duckdb_sql
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
from service.lakehouse.delta.commit import commit, nullable, publish, staging
from service.lakehouse.delta.errors import target_errors
from service.lakehouse.delta.scan import bronze_scan, count_rows, open_table
from service.table_rules import BRONZE_META, BRONZE_META_FIELDS
from service.transform import sql as q
from service.transform.plan import SampledPlanRejected, SilverPlan


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
    def from_config(cls, config: dict) -> DeltaTarget:
        lakehouse_dir = config.get("LAKEHOUSE_DIR")
        if not lakehouse_dir:
            data_dir = config.get("DATA_DIR")
            if not data_dir:
                raise ValueError("LAKEHOUSE_DIR (or DATA_DIR) must be set for the delta target")
            lakehouse_dir = os.path.join(data_dir, "lakehouse")
        memory_limit, threads, temp_dir = sync_duckdb(config)
        return cls(lakehouse_dir, duckdb_memory_limit=memory_limit, duckdb_threads=threads, temp_dir=temp_dir)

    def location(self, ref: TableRef) -> str:
        """The table's directory: ``<lakehouse>/<catalog>/<schema>/<table>``."""
        for part in (ref.catalog, ref.schema, ref.table):
            if not part or part in (".", "..") or "/" in part or "\\" in part or "\0" in part:
                raise PermanentTargetError(f"invalid table name {ref.full_name!r}")
        return os.path.join(self.lakehouse_dir, ref.catalog, ref.schema, ref.table)

    # ------------------------------------------------------------------ bronze

    def write_bronze(self, ctx: SyncContext) -> TableResult:
        ref = ctx.bronze
        path = self.location(ref)
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
            partition_values = dict(zip(BRONZE_META, (
                ctx.dataset_id or None,
                bronze_files.partition_timestamp(ctx.ingested_at),
                ctx.source_file or None,
            )))
            try:
                delta_schema = DeltaSchema.from_arrow(table_schema)
            except Exception as exc:  # a type Delta cannot store
                raise PermanentTargetError(f"source columns cannot be stored in Delta: {exc}") from exc

            with staging(path) as staging_dir:
                staged = os.path.join(staging_dir, "data.parquet")
                if copy_as_is:
                    bronze_files.link_or_copy(src, staged)
                else:
                    row_bytes = sum(groups) / max(1, metadata.num_rows)
                    rows_per_group = int(bronze_files.BRONZE_TARGET_ROW_GROUP_BYTES / max(1.0, row_bytes))
                    bronze_files.rewrite_parquet(src, staged, pa.schema(fields),
                                                 rows_per_group=min(max(rows_per_group, 1024), 122_880))
                rows = pq.read_metadata(staged).num_rows
                adds = publish(path, [staged])
                commit(path, delta_schema, adds, partition_by=list(BRONZE_META), partition_values=partition_values)
            return TableResult(table=ref, location=path, row_count=rows)

    # ------------------------------------------------------------------ silver

    def write_silver(self, ctx: SyncContext, plan: SilverPlan) -> TableResult:
        bronze, silver = ctx.bronze, ctx.silver
        bronze_path = self.location(bronze)
        path = self.location(silver)
        with target_errors(f"writing silver table {silver.full_name}"):
            duckdb_sql.validate_plan(plan)
            table = open_table(bronze_path, bronze)
            with contextlib.closing(q.connect(self.duckdb_memory_limit, self.duckdb_threads, self.temp_dir)) as con:
                scan = bronze_scan(con, table, bronze_path)
                silver_sql = duckdb_sql.silver_sql(con, plan, scan)
                with staging(path) as staging_dir:
                    out_file = os.path.join(staging_dir, "data.parquet")
                    try:
                        duckdb_sql.write_distinct(con, silver_sql, len(plan.columns), staging_dir, out_file)
                    except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
                        if plan.verified:
                            raise
                        raise SampledPlanRejected(str(exc)) from exc
                    # The table schema is the written file's (DuckDB writes one even for no
                    # rows): asking DuckDB for the query's schema first cost a planning pass.
                    metadata = pq.read_metadata(out_file)
                    delta_schema = DeltaSchema.from_arrow(nullable(metadata.schema.to_arrow_schema()))
                    files = [out_file] if metadata.num_rows > 0 else []
                    adds = publish(path, files)
                    rows = sum(json.loads(a.stats)["numRecords"] for a in adds)
                    commit(path, delta_schema, adds)
        return TableResult(table=silver, location=path, row_count=rows)

    # ------------------------------------------------------------------ reading & admin

    def count_rows(self, ref: TableRef) -> int:
        path = self.location(ref)
        with target_errors(f"counting rows of {ref.full_name}"):
            return count_rows(open_table(path, ref), path)

    def read_back(self, ctx: SyncContext) -> TableStates:
        def state(ref: TableRef) -> TableState:
            path = self.location(ref)
            if not os.path.isdir(os.path.join(path, "_delta_log")):
                return TableState(ref, exists=False, location=path)
            return TableState(ref, exists=True, location=path, row_count=self.count_rows(ref))

        return TableStates(bronze=state(ctx.bronze), silver=state(ctx.silver))

    def drop_tables(self, ctx: SyncContext, tables: list[TableRef]) -> None:
        for ref in tables:
            path = self.location(ref)
            with target_errors(f"dropping table {ref.full_name}"), contextlib.suppress(FileNotFoundError):
                shutil.rmtree(path)

    def ping(self) -> None:
        with target_errors(f"checking lakehouse directory {self.lakehouse_dir}"):
            os.makedirs(self.lakehouse_dir, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.lakehouse_dir, prefix=".ping-"):
                pass

    def describe(self) -> dict:
        return {"target": self.name}
