"""The steps of a sync run (bronze → silver → metadata) and how their progress is recorded.

Each step is one call here: it marks itself started in PostgreSQL, does its work against
the lakehouse target outside any transaction, then records its result in one transaction.
Steps are idempotent: tables are replaced, never appended to, so a step delivered twice
leaves the same table. A run that is no longer the dataset's current run does nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from service.db import session_scope
from service.failures import PermanentSyncError, log_detail, step_error_text
from service.lakehouse import PermanentTargetError, TableRef
from service.lakehouse.base import SyncContext, TableResult, quarantine_ref
from service.locks import dataset_lock
from service.models import BadRow, Dataset, LakehouseTable, SyncRun, SyncStepRun, Tenant, utcnow
from service.naming import table_name
from service.retry import quick_retrying
from service.runtime import runtime
from service.storage import StoredFileMissing
from service.transform import SampledPlanRejected, infer_plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepStart:
    """What a step is given when it starts: the target's context, and what earlier steps
    of the run recorded."""

    ctx: SyncContext
    recorded_rows: dict = field(default_factory=dict)  # layer -> rows the target reported
    bad_rows: int = 0  # rows the upload set aside


def context_for(
    dataset: Dataset,
    tenant: Tenant,
    *,
    run_id: uuid.UUID | None,
    ingested_at: datetime,
    recorded: dict[str, TableRef] | None = None,
) -> SyncContext:
    """The sync context of a dataset: its tables as recorded by earlier steps (``recorded``,
    else the dataset's), else as we name them."""
    name = table_name(dataset.name, dataset.id)
    if recorded is None:
        recorded = {t.layer: TableRef(t.catalog, t.schema, t.table) for t in dataset.tables}
    proposed = {layer: TableRef(tenant.catalog, layer, name) for layer in ("bronze", "silver")}
    refs = {**proposed, **recorded}
    return SyncContext(
        dataset_id=str(dataset.id),
        tenant_id=str(dataset.tenant_id),
        run_id=str(run_id or ""),
        dataset_name=dataset.name,
        bronze=refs["bronze"],
        silver=refs["silver"],
        source_path=None,
        source_file=dataset.file_name,
        ingested_at=ingested_at,
        columns=tuple(dataset.columns),
        row_count=dataset.row_count,
        schema_hints=tuple((dataset.schema_hints or {}).items()),
    )


def dataset_tables(ctx: SyncContext, dataset: Dataset, tenant: Tenant) -> list[TableRef]:
    """Every table the dataset may have on the target: recorded, or named as we name them."""
    name = table_name(dataset.name, dataset.id)
    refs = {ctx.bronze, ctx.silver, *(TableRef(tenant.catalog, layer, name) for layer in ("bronze", "silver"))}
    refs |= {quarantine_ref(ref) for ref in refs if ref.schema == "bronze"}
    return sorted(refs, key=lambda r: r.full_name)


@dataclass
class _Current:
    dataset: Dataset
    run: SyncRun
    tenant: Tenant
    row: SyncStepRun  # the step's row, added to the session when it is new
    recorded: dict[str, TableRef]  # the dataset's tables by layer


# The dataset's recorded tables as one JSON value of the same row, rather than a lazy load
# (one more query per step).
_RECORDED_TABLES = (
    select(
        func.json_agg(
            func.json_build_array(
                LakehouseTable.layer, LakehouseTable.catalog, LakehouseTable.schema, LakehouseTable.table
            )
        )
    )
    .where(LakehouseTable.dataset_id == Dataset.id)
    .correlate(Dataset)
    .scalar_subquery()
)


# Built once: every step runs it twice, and building the statement cost more than its
# round trip.
_CURRENT = (
    select(Dataset, SyncRun, Tenant, SyncStepRun, _RECORDED_TABLES)
    .join(SyncRun, SyncRun.dataset_id == Dataset.id)
    .join(Tenant, Tenant.id == Dataset.tenant_id)
    .outerjoin(SyncStepRun, and_(SyncStepRun.run_id == SyncRun.id, SyncStepRun.step == bindparam("step")))
    .where(Dataset.id == bindparam("dataset_id"), SyncRun.id == bindparam("run_id"))
    .with_for_update(of=(Dataset, SyncRun))
)


def _current(session: Session, dataset_id: uuid.UUID, run_id: uuid.UUID, step: str) -> _Current | None:
    """The dataset and run (both locked), the tenant, the step's row and the recorded tables,
    or None when the run is no longer the one to do.

    One query: each step reads them twice, and round trips to PostgreSQL are most of
    what a step of a small dataset costs.
    """
    found = session.execute(_CURRENT, {"dataset_id": dataset_id, "run_id": run_id, "step": step}).first()
    if found is None:
        return None
    dataset, run, tenant, row, tables = found
    if dataset.current_run_id != run.id or run.status in ("synced", "failed"):
        return None
    if row is None:
        row = SyncStepRun(run_id=run_id, step=step, status="pending", attempts=0)
        session.add(row)
    recorded = {layer: TableRef(catalog, schema, table) for layer, catalog, schema, table in tables or ()}
    return _Current(dataset, run, tenant, row, recorded)


def begin_step(step: str, dataset_id: uuid.UUID, run_id: uuid.UUID) -> StepStart | None:
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
                _fail(
                    dataset,
                    run,
                    row,
                    f"{step}: started {row.attempts} times without finishing "
                    f"(the worker was lost each time); giving up after SYNC_MAX_DELIVERIES={limit}",
                    now,
                )
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
            ctx = context_for(dataset, tenant, run_id=run.id, ingested_at=run.started_at, recorded=found.recorded)
            return StepStart(
                ctx,
                {"bronze": dataset.row_count_bronze, "silver": dataset.row_count_silver},
                bad_rows=dataset.bad_row_count,
            )
    raise AssertionError("unreachable")


def _finish_step(step: str, ctx: SyncContext, rows: int | None, apply) -> bool:
    """Record a step's success and apply its changes; False when the run was superseded."""
    now = utcnow()
    for attempt in quick_retrying():
        with attempt, session_scope() as session:
            found = _current(session, uuid.UUID(ctx.dataset_id), uuid.UUID(ctx.run_id), step)
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


def _record_table(
    session: Session, dataset: Dataset, layer: str, table: TableRef, location: str, rows: int | None
) -> None:
    """Record where a layer's table is: one INSERT ... ON CONFLICT, not a read and a write."""
    values = {
        "target": runtime().target().name,
        "catalog": table.catalog,
        "schema": table.schema,
        "table": table.table,
        "full_name": table.full_name,
        "location": location,
        "row_count": rows,
    }
    # On the session's connection: a Core statement needs none of the ORM's bulk machinery.
    session.connection().execute(
        pg_insert(LakehouseTable)
        .values(dataset_id=dataset.id, layer=layer, **values)
        .on_conflict_do_update(index_elements=["dataset_id", "layer"], set_={**values, "updated_at": utcnow()})
    )


@contextlib.contextmanager
def _with_source(ctx: SyncContext) -> Iterator[SyncContext]:
    """The context with a local path of the dataset's file for the length of the block: the
    stored file itself on a local store, a scratch copy on an object store (removed after)."""
    with contextlib.ExitStack() as stack:
        try:
            path = stack.enter_context(runtime().store.local_copy(ctx.source_file))
        except StoredFileMissing:
            raise PermanentSyncError(
                f"the stored file {ctx.source_file} of dataset {ctx.dataset_id} is missing"
            ) from None
        yield dataclasses.replace(ctx, source_path=path)


def _skipped(dataset_id: uuid.UUID) -> dict:
    return {"dataset_id": str(dataset_id), "skipped": True}


def _write_quarantine(ctx: SyncContext, count: int) -> TableResult | None:
    """The upload's ``count`` bad rows (at most MAX_BAD_ROWS) as a table beside bronze, where
    the target can hold one."""
    if not count:
        return None
    with session_scope() as session:
        found = session.scalars(
            select(BadRow).where(BadRow.dataset_id == uuid.UUID(ctx.dataset_id)).order_by(BadRow.line)
        )
        rows = [{"line": r.line, "reason": r.reason, "raw": r.raw} for r in found]
    if not rows:
        return None
    return runtime().target().write_quarantine(ctx, ctx.quarantine, rows)


def run_bronze(dataset_id: uuid.UUID, run_id: uuid.UUID) -> dict:
    start = begin_step("bronze", dataset_id, run_id)
    if start is None:
        return _skipped(dataset_id)
    ctx = start.ctx
    with _with_source(ctx) as source_ctx:
        result = runtime().target().write_bronze(source_ctx)
    if result.row_count != ctx.row_count:
        raise PermanentSyncError(f"bronze table has {result.row_count} rows, the dataset has {ctx.row_count}")
    quarantine = _write_quarantine(ctx, start.bad_rows)

    def apply(session, dataset, run):
        dataset.row_count_bronze = result.row_count
        _record_table(session, dataset, "bronze", result.table, result.location, result.row_count)
        if quarantine is not None:
            _record_table(session, dataset, "quarantine", quarantine.table, quarantine.location, quarantine.row_count)

    _finish_step("bronze", ctx, result.row_count, apply)
    return {"dataset_id": str(dataset_id), "bronze_table": result.table.full_name, "rows": result.row_count}


def _write_silver(ctx: SyncContext) -> tuple[TableResult, list]:
    """Write the silver table; its result and the plan's columns."""
    rt = runtime()
    tgt, local = rt.target(), ctx.source_path
    assert local is not None, "silver is written inside _with_source"

    def infer(sampled: bool):
        return infer_plan(
            local,
            null_tokens=current_app.config["NULL_TOKENS"],
            settings=rt.sync_settings,
            sampled=sampled,
            hints=dict(ctx.schema_hints),
        )

    # A target that checks each value as it writes gets types from a sample, which saves
    # a whole pass over the file; a value that proves the sample wrong costs that pass back.
    plan = infer(sampled=tgt.checks_sampled_plans)
    try:
        result = tgt.write_silver(ctx, plan)
    except SampledPlanRejected as exc:
        log.info(
            "silver of dataset %s: the sampled types do not hold (%s); inferring from every value", ctx.dataset_id, exc
        )
        plan = infer(sampled=False)
        result = tgt.write_silver(ctx, plan)
    return result, plan.columns


def run_silver(dataset_id: uuid.UUID, run_id: uuid.UUID) -> dict:
    start = begin_step("silver", dataset_id, run_id)
    if start is None:
        return _skipped(dataset_id)
    ctx = start.ctx
    with _with_source(ctx) as source_ctx:
        result, plan_columns = _write_silver(source_ctx)
    planned = {c.source_name: c for c in plan_columns}

    def apply(session, dataset, run):
        columns = []
        for col in dataset.columns:
            silver = planned.get(col["source_name"])
            if silver is not None:
                col = {
                    **col,
                    "name": silver.name,
                    "type": silver.source_type if silver.type == "source" else silver.type,
                }
            columns.append(col)
        dataset.columns = columns
        dataset.row_count_silver = result.row_count
        dataset.values_rescued = result.values_rescued
        bronze_rows = dataset.row_count_bronze if dataset.row_count_bronze is not None else dataset.row_count
        dataset.duplicates_removed = bronze_rows - result.row_count
        _record_table(session, dataset, "silver", result.table, result.location, result.row_count)

    _finish_step("silver", ctx, result.row_count, apply)
    return {"dataset_id": str(dataset_id), "silver_table": result.table.full_name, "rows": result.row_count}


def run_metadata(dataset_id: uuid.UUID, run_id: uuid.UUID) -> dict:
    start = begin_step("metadata", dataset_id, run_id)
    if start is None:
        return _skipped(dataset_id)
    ctx = start.ctx
    states = runtime().target().read_back(ctx)
    rows = {}
    for layer, state in (("bronze", states.bronze), ("silver", states.silver)):
        if not state.exists:
            raise PermanentSyncError(f"the {layer} table {state.table.full_name} does not exist on the target")
        # A target that does not count rows (MCP) is taken at the word of its load answers.
        rows[layer] = state.row_count if state.row_count is not None else start.recorded_rows.get(layer)
        if rows[layer] is None:
            raise PermanentSyncError(f"no row count of the {layer} table {state.table.full_name} was recorded")
    if rows["bronze"] != ctx.row_count:
        raise PermanentSyncError(
            f"bronze table {states.bronze.table.full_name} has {rows['bronze']} rows, expected {ctx.row_count}"
        )

    def apply(session, dataset, run):
        now = utcnow()
        dataset.row_count_bronze = rows["bronze"]
        dataset.row_count_silver = rows["silver"]
        dataset.duplicates_removed = rows["bronze"] - rows["silver"]
        for layer, state in (("bronze", states.bronze), ("silver", states.silver)):
            _record_table(session, dataset, layer, state.table, state.location, rows[layer])
        dataset.sync_status = "synced"
        dataset.sync_step = None
        dataset.last_error = None
        dataset.last_sync_at = now
        run.status = "synced"
        run.step = None
        run.finished_at = now

    _finish_step("metadata", ctx, rows["silver"], apply)
    return {
        "dataset_id": str(dataset_id),
        "status": "synced",
        "bronze_rows": rows["bronze"],
        "silver_rows": rows["silver"],
    }


def _locked(step_fn):
    """Run a step holding its dataset's lock, so no two steps of a dataset interleave."""

    def run(dataset_id: uuid.UUID, run_id: uuid.UUID) -> dict:
        with dataset_lock(dataset_id, wait=2.0):
            return step_fn(dataset_id, run_id)

    run.__name__ = step_fn.__name__
    return run


STEPS = {"bronze": _locked(run_bronze), "silver": _locked(run_silver), "metadata": _locked(run_metadata)}


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
    message = step_error_text(step, exc)
    log.warning("step %s of dataset %s failed (final: %s): %s", step, dataset_id, final, log_detail(exc))
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


PERMANENT_ERRORS = (PermanentSyncError, PermanentTargetError)
