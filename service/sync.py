"""The steps of a sync run (bronze → silver → metadata) and how their progress is recorded.

Each step is one call here: it marks itself started in PostgreSQL, does its work against
the lakehouse target outside any transaction, then records its result in one transaction.
Steps are idempotent: tables are replaced, never appended to, so a step delivered twice
leaves the same table. A run that is no longer the dataset's current run does nothing.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import and_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from service.config import sync_duckdb
from service.db import session_scope
from service.lakehouse import LakehouseTarget, PermanentTargetError, TableRef, get_target
from service.lakehouse.base import BronzeSource
from service.locks import dataset_lock
from service.models import Dataset, LakehouseTable, SyncRun, SyncStepRun, Tenant, utcnow
from service.naming import table_name
from service.retry import quick_retrying
from service.storage import LocalStore
from service.transform import SampledPlanRejected, infer_plan

log = logging.getLogger(__name__)


class PermanentSyncError(Exception):
    """The step cannot succeed by trying again."""


@dataclass(frozen=True)
class StepInput:
    dataset_id: uuid.UUID
    run_id: uuid.UUID
    tenant_id: uuid.UUID
    dataset_name: str
    columns: tuple
    catalog: str
    table: str
    file_name: str
    row_count: int
    ingested_at: datetime

    def ref(self, layer: str) -> TableRef:
        return TableRef(self.catalog, layer, self.table)


def target() -> LakehouseTarget:
    """The process's lakehouse target, built once from the app config."""
    ext = current_app.extensions
    if "lakehouse_target" not in ext:
        ext["lakehouse_target"] = get_target(current_app.config)
    return ext["lakehouse_target"]


@dataclass
class _Current:
    dataset: Dataset
    run: SyncRun
    tenant: Tenant
    row: SyncStepRun  # the step's row, added to the session when it is new


def _current(session: Session, dataset_id: uuid.UUID, run_id: uuid.UUID, step: str) -> _Current | None:
    """The dataset and run (both locked), the tenant and the step's row, or None when the run
    is no longer the one to do.

    One query: each step reads them twice, and round trips to PostgreSQL are most of
    what a step of a small dataset costs.
    """
    found = session.execute(
        select(Dataset, SyncRun, Tenant, SyncStepRun)
        .join(SyncRun, SyncRun.dataset_id == Dataset.id)
        .join(Tenant, Tenant.id == Dataset.tenant_id)
        .outerjoin(SyncStepRun, and_(SyncStepRun.run_id == SyncRun.id, SyncStepRun.step == step))
        .where(Dataset.id == dataset_id, SyncRun.id == run_id)
        .with_for_update(of=(Dataset, SyncRun))
    ).first()
    if found is None:
        return None
    dataset, run, tenant, row = found
    if dataset.current_run_id != run.id or run.status in ("synced", "failed"):
        return None
    if row is None:
        row = SyncStepRun(run_id=run_id, step=step, status="pending", attempts=0)
        session.add(row)
    return _Current(dataset, run, tenant, row)


def begin_step(step: str, dataset_id: uuid.UUID, run_id: uuid.UUID) -> StepInput | None:
    """Record that a step starts; None when the run was superseded, finished or deleted."""
    now = utcnow()
    for attempt in quick_retrying():
        with attempt, session_scope() as session:
            found = _current(session, dataset_id, run_id, step)
            if found is None:
                return None
            dataset, run, tenant, row = found.dataset, found.run, found.tenant, found.row
            if row.status == "succeeded":
                return None  # a duplicate delivery (e.g. re-sent by the sweeper); the work is done
            limit = int(current_app.config["SYNC_MAX_DELIVERIES"])
            if row.attempts >= limit:
                # Started that often without an outcome: the step kills its worker. Stop here.
                _fail(dataset, run, row, f"{step}: started {row.attempts} times without finishing "
                      f"(the worker was lost each time); giving up after SYNC_MAX_DELIVERIES={limit}", now)
                return None
            row.status = "running"
            row.attempts += 1
            row.started_at = row.started_at or now
            row.finished_at = None
            run.status = "syncing"
            run.step = step
            run.started_at = run.started_at or now
            run.heartbeat_at = now
            dataset.sync_status = "syncing"
            dataset.sync_step = step
            dataset.sync_attempts += 1
            return StepInput(
                dataset_id=dataset.id,
                run_id=run.id,
                tenant_id=dataset.tenant_id,
                dataset_name=dataset.name,
                columns=tuple(dataset.columns),
                catalog=tenant.catalog,
                table=table_name(dataset.name, dataset.id),
                file_name=dataset.file_name,
                row_count=dataset.row_count,
                ingested_at=run.started_at,
            )
    raise AssertionError("unreachable")


def _finish_step(step: str, inp: StepInput, rows: int | None, apply) -> bool:
    """Record a step's success and apply its changes; False when the run was superseded."""
    now = utcnow()
    for attempt in quick_retrying():
        with attempt, session_scope() as session:
            found = _current(session, inp.dataset_id, inp.run_id, step)
            if found is None:
                return False
            dataset, run, row = found.dataset, found.run, found.row
            row.status = "succeeded"
            row.finished_at = now
            row.rows = rows
            row.error = None
            run.heartbeat_at = now
            apply(session, dataset, run)
            return True
    raise AssertionError("unreachable")


def _upsert_table(session: Session, dataset: Dataset, ref: TableRef, location: str, rows: int | None) -> None:
    """Record where a layer's table is: one INSERT ... ON CONFLICT, not a read and a write."""
    values = {"target": target().name, "catalog": ref.catalog, "schema": ref.schema, "table": ref.table,
              "full_name": ref.full_name, "location": location, "row_count": rows}
    session.execute(
        pg_insert(LakehouseTable)
        .values(dataset_id=dataset.id, layer=ref.schema, **values)
        .on_conflict_do_update(index_elements=["dataset_id", "layer"], set_={**values, "updated_at": utcnow()})
    )


def table_refs(session: Session, dataset: Dataset) -> list[TableRef]:
    """The dataset's bronze and silver tables, recorded or not yet."""
    tenant = session.get(Tenant, dataset.tenant_id)
    name = table_name(dataset.name, dataset.id)
    refs = {TableRef(tenant.catalog, layer, name) for layer in ("bronze", "silver")}
    refs.update(TableRef(t.catalog, t.schema, t.table) for t in dataset.tables)
    return sorted(refs, key=lambda r: r.full_name)


def _local_parquet(inp: StepInput) -> Path:
    path = LocalStore.from_config(current_app.config).path_for(inp.file_name)
    if not path.exists():
        raise PermanentSyncError(f"the local file {inp.file_name} of dataset {inp.dataset_id} is missing")
    return path


def run_bronze(dataset_id: uuid.UUID, run_id: uuid.UUID) -> dict:
    inp = begin_step("bronze", dataset_id, run_id)
    if inp is None:
        return {"dataset_id": str(dataset_id), "skipped": True}
    ref = inp.ref("bronze")
    source = BronzeSource(
        dataset_id=str(inp.dataset_id),
        parquet_path=_local_parquet(inp),
        source_file=inp.file_name,
        ingested_at=inp.ingested_at,
        tenant_id=str(inp.tenant_id),
        dataset_name=inp.dataset_name,
        columns=inp.columns,
    )
    result = target().write_bronze(ref, source)
    if result.row_count != inp.row_count:
        raise PermanentSyncError(f"bronze table has {result.row_count} rows, the dataset has {inp.row_count}")

    def apply(session, dataset, run):
        dataset.row_count_bronze = result.row_count
        _upsert_table(session, dataset, ref, result.location, result.row_count)

    _finish_step("bronze", inp, result.row_count, apply)
    return {"dataset_id": str(dataset_id), "bronze_table": ref.full_name, "rows": result.row_count}


def run_silver(dataset_id: uuid.UUID, run_id: uuid.UUID) -> dict:
    inp = begin_step("silver", dataset_id, run_id)
    if inp is None:
        return {"dataset_id": str(dataset_id), "skipped": True}
    config = current_app.config
    local = _local_parquet(inp)
    tgt, ref = target(), inp.ref("silver")

    def infer(sampled: bool):
        return infer_plan(local, null_tokens=config["NULL_TOKENS"], settings=sync_duckdb_settings(config),
                          sampled=sampled)

    # A target that checks each value as it writes gets types from a sample, which saves
    # a whole pass over the file; a value that proves the sample wrong costs that pass back.
    plan = infer(sampled=tgt.checks_sampled_plans)
    try:
        result = tgt.write_silver(inp.ref("bronze"), ref, plan)
    except SampledPlanRejected as exc:
        log.info("silver of dataset %s: the sampled types do not hold (%s); inferring from every value",
                 inp.dataset_id, exc)
        plan = infer(sampled=False)
        result = tgt.write_silver(inp.ref("bronze"), ref, plan)
    planned = {c.source_name: c for c in plan.columns}

    def apply(session, dataset, run):
        columns = []
        for col in dataset.columns:
            silver = planned.get(col["source_name"])
            if silver is not None:
                col = {**col, "name": silver.name, "type": silver.source_type if silver.type == "source" else silver.type}
            columns.append(col)
        dataset.columns = columns
        dataset.row_count_silver = result.row_count
        dataset.duplicates_removed = result.duplicates_removed
        _upsert_table(session, dataset, ref, result.location, result.row_count)

    _finish_step("silver", inp, result.row_count, apply)
    return {"dataset_id": str(dataset_id), "silver_table": ref.full_name, "rows": result.row_count}


def run_metadata(dataset_id: uuid.UUID, run_id: uuid.UUID) -> dict:
    inp = begin_step("metadata", dataset_id, run_id)
    if inp is None:
        return {"dataset_id": str(dataset_id), "skipped": True}
    tgt = target()
    bronze, silver = inp.ref("bronze"), inp.ref("silver")
    bronze_rows = tgt.count_rows(bronze)
    silver_rows = tgt.count_rows(silver)
    if bronze_rows != inp.row_count:
        raise PermanentSyncError(f"bronze table {bronze.full_name} has {bronze_rows} rows, expected {inp.row_count}")

    def apply(session, dataset, run):
        now = utcnow()
        dataset.row_count_bronze = bronze_rows
        dataset.row_count_silver = silver_rows
        dataset.duplicates_removed = bronze_rows - silver_rows
        _upsert_table(session, dataset, bronze, tgt.location(bronze), bronze_rows)
        _upsert_table(session, dataset, silver, tgt.location(silver), silver_rows)
        dataset.sync_status = "synced"
        dataset.sync_step = None
        dataset.last_error = None
        dataset.last_sync_at = now
        run.status = "synced"
        run.step = None
        run.finished_at = now

    _finish_step("metadata", inp, silver_rows, apply)
    return {"dataset_id": str(dataset_id), "status": "synced", "bronze_rows": bronze_rows, "silver_rows": silver_rows}


def _locked(step_fn):
    """Run a step holding its dataset's lock, so no two steps of a dataset interleave."""

    def run(dataset_id: uuid.UUID, run_id: uuid.UUID) -> dict:
        with dataset_lock(dataset_id, wait=2.0):
            return step_fn(dataset_id, run_id)

    run.__name__ = step_fn.__name__
    return run


STEPS = {"bronze": _locked(run_bronze), "silver": _locked(run_silver), "metadata": _locked(run_metadata)}
STEP_ORDER = ("bronze", "silver", "metadata")


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:2000]


def _fail(dataset: Dataset, run: SyncRun, row: SyncStepRun, message: str, now: datetime) -> None:
    row.status = "failed"
    row.error = message
    row.finished_at = now
    dataset.last_error = message
    dataset.sync_status = "failed"
    dataset.sync_step = row.step
    run.status = "failed"
    run.error = message
    run.finished_at = now


def record_step_error(
    step: str, dataset_id: uuid.UUID, run_id: uuid.UUID, exc: BaseException, *, final: bool, retry_in: float = 0.0
) -> None:
    """Write a step's error; a final one fails the run and the dataset's sync."""
    message = f"{step}: {describe_error(exc)}"
    now = utcnow()
    for attempt in quick_retrying():
        with attempt, session_scope() as session:
            found = _current(session, dataset_id, run_id, step)
            if found is None:
                return
            dataset, run, row = found.dataset, found.run, found.row
            if final:
                _fail(dataset, run, row, message, now)
                return
            row.status = "retrying"
            row.error = message
            dataset.last_error = message
            # The run is alive until its retry is due; the sweeper waits that long.
            run.heartbeat_at = now + timedelta(seconds=retry_in)


def duckdb_settings(config: dict):
    """DuckDB settings of the API's conversions."""
    return _ingest_settings(config["DUCKDB_MEMORY_LIMIT"], config["DUCKDB_THREADS"], str(Path(config["DATA_DIR"]) / "tmp"))


def sync_duckdb_settings(config: dict):
    """DuckDB settings of the worker's steps: the same database as the Delta target's."""
    return _ingest_settings(*sync_duckdb(config))


def _ingest_settings(memory_limit: str, threads: int, temp_dir: str | None):
    from service.ingest import IngestSettings

    return IngestSettings(duckdb_memory_limit=memory_limit, duckdb_threads=threads, temp_dir=temp_dir)


PERMANENT_ERRORS = (PermanentSyncError, PermanentTargetError)
