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
from sqlalchemy import Connection, Row, select

from service import progress
from service.db import session_scope, transaction
from service.failures import PermanentSyncError, log_detail, step_error_text
from service.lakehouse import PermanentTargetError, TableRef
from service.lakehouse.base import SyncContext, TableResult, quarantine_ref
from service.locks import dataset_lock
from service.models import BadRow, Dataset, Tenant, catalog_of, utcnow
from service.naming import table_name
from service.observability.run_metrics import run_ended
from service.retry import quick_retrying
from service.runtime import runtime
from service.storage import StoredFileMissing
from service.transform import SampledPlanRejected, arrow_types, infer_plan

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
    if recorded is None:
        recorded = {t.layer: TableRef(t.catalog, t.schema, t.table) for t in dataset.tables}
    return _context(dataset, tenant.catalog, run_id=run_id, ingested_at=ingested_at, recorded=recorded)


def _context(
    dataset, catalog: str, *, run_id: uuid.UUID | None, ingested_at: datetime, recorded: dict[str, TableRef]
) -> SyncContext:
    """``dataset`` is a Dataset or a row with the same attribute names."""
    name = table_name(dataset.name, dataset.id)
    proposed = {layer: TableRef(catalog, layer, name) for layer in ("bronze", "silver")}
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


def begin_step(step: str, dataset_id: uuid.UUID, run_id: uuid.UUID) -> StepStart | None:
    """Record that a step starts; None when the run was superseded, finished or deleted."""
    limit = int(current_app.config["SYNC_MAX_DELIVERIES"])
    begun = quick_retrying()(_begin, step, dataset_id, run_id, limit, utcnow())
    if begun is None:
        return None
    current, started = begun
    if started is None:
        run_ended("failed")  # given up, and committed
        return None
    ctx = _context(
        current,
        catalog_of(current.tenant_slug),
        run_id=run_id,
        ingested_at=started,
        recorded=progress.recorded_tables(current),
    )
    return StepStart(
        ctx,
        {"bronze": current.row_count_bronze, "silver": current.row_count_silver},
        bad_rows=current.bad_row_count,
    )


def _begin(
    step: str, dataset_id: uuid.UUID, run_id: uuid.UUID, limit: int, now: datetime
) -> tuple[Row, datetime | None] | None:
    """One transaction of begin_step: the step's ``current`` row and the run's start time
    (None when the step is given up); None when there is nothing to do."""
    with transaction() as conn:
        current = progress.current(conn, dataset_id, run_id, step)
        if current is None:
            return None
        if current.step_status == "succeeded":
            return None  # a duplicate delivery (e.g. re-sent by the sweeper); the work is done
        attempts = current.step_attempts or 0
        if attempts >= limit:
            # Started that often without an outcome: the step kills its worker. Stop here.
            message = (
                f"{step}: started {attempts} times without finishing "
                f"(the worker was lost each time); giving up after SYNC_MAX_DELIVERIES={limit}"
            )
            _fail(conn, dataset_id, run_id, step, message, now)
            return current, None
        return current, progress.start_step(conn, dataset_id, run_id, step, now)


@dataclass
class Outcome:
    """What a step that succeeded changes: dataset and run fields, and tables to record."""

    dataset: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    tables: list[tuple[str, TableResult]] = field(default_factory=list)  # (layer, table)


def _finish_step(step: str, ctx: SyncContext, rows: int | None, outcome) -> bool:
    """Record a step's success and what ``outcome(current, now)`` says it changes; False when
    the run was superseded."""
    target = runtime().target().name
    args = (step, uuid.UUID(ctx.dataset_id), uuid.UUID(ctx.run_id), rows, outcome, target, utcnow())
    changes = quick_retrying()(_finish, *args)
    if changes is None:
        return False
    if "status" in changes.run:
        run_ended(changes.run["status"])  # counted once committed
    return True


def _finish(
    step: str, dataset_id: uuid.UUID, run_id: uuid.UUID, rows: int | None, outcome, target: str, now: datetime
) -> Outcome | None:
    """One transaction of _finish_step: the changes it wrote; None when the run was superseded."""
    with transaction() as conn:
        current = progress.current(conn, dataset_id, run_id, step)
        if current is None:
            return None
        changes: Outcome = outcome(current, now)
        progress.set_step(conn, run_id, step, status="succeeded", finished_at=now, rows=rows, error=None)
        progress.set_run(conn, run_id, heartbeat_at=now, **changes.run)
        if changes.dataset:
            progress.set_dataset(conn, dataset_id, **changes.dataset)
        for layer, table in changes.tables:
            progress.record_table(conn, dataset_id, layer, target, table)
        return changes


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

    def outcome(current, now) -> Outcome:
        tables = [("bronze", result)] + ([("quarantine", quarantine)] if quarantine is not None else [])
        return Outcome(dataset={"row_count_bronze": result.row_count}, tables=tables)

    _finish_step("bronze", ctx, result.row_count, outcome)
    return {"dataset_id": str(dataset_id), "bronze_table": result.table.full_name, "rows": result.row_count}


def _write_silver(ctx: SyncContext) -> tuple[TableResult, list]:
    """Write the silver table; its result and the plan's columns."""
    rt = runtime()
    tgt, local = rt.target(), ctx.source_path
    assert local is not None, "silver is written inside _with_source"
    # A small dataset's rows are read once, for the plan and for the target's write.
    ctx = dataclasses.replace(ctx, source_rows=arrow_types.read_small_parquet(local))

    def infer(sampled: bool):
        return infer_plan(
            local,
            null_tokens=current_app.config["NULL_TOKENS"],
            settings=rt.sync_settings,
            sampled=sampled,
            hints=dict(ctx.schema_hints),
            small_rows=ctx.source_rows,
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

    def outcome(current, now) -> Outcome:
        columns = []
        for col in current.columns:
            silver = planned.get(col["source_name"])
            if silver is not None:
                col = {
                    **col,
                    "name": silver.name,
                    "type": silver.source_type if silver.type == "source" else silver.type,
                }
            columns.append(col)
        bronze_rows = current.row_count_bronze if current.row_count_bronze is not None else current.row_count
        changes = {
            "columns": columns,
            "row_count_silver": result.row_count,
            "values_rescued": result.values_rescued,
            "duplicates_removed": bronze_rows - result.row_count,
        }
        return Outcome(dataset=changes, tables=[("silver", result)])

    _finish_step("silver", ctx, result.row_count, outcome)
    return {"dataset_id": str(dataset_id), "silver_table": result.table.full_name, "rows": result.row_count}


def run_metadata(dataset_id: uuid.UUID, run_id: uuid.UUID) -> dict:
    start = begin_step("metadata", dataset_id, run_id)
    if start is None:
        return _skipped(dataset_id)
    ctx = start.ctx
    states = runtime().target().read_back(ctx)
    rows: dict[str, int] = {}
    for layer, state in (("bronze", states.bronze), ("silver", states.silver)):
        if not state.exists:
            raise PermanentSyncError(f"the {layer} table {state.table.full_name} does not exist on the target")
        # A target that does not count rows (MCP) is taken at the word of its load answers.
        count = state.row_count if state.row_count is not None else start.recorded_rows.get(layer)
        if count is None:
            raise PermanentSyncError(f"no row count of the {layer} table {state.table.full_name} was recorded")
        rows[layer] = count
    if rows["bronze"] != ctx.row_count:
        raise PermanentSyncError(
            f"bronze table {states.bronze.table.full_name} has {rows['bronze']} rows, expected {ctx.row_count}"
        )

    def outcome(current, now) -> Outcome:
        return Outcome(
            dataset={
                "row_count_bronze": rows["bronze"],
                "row_count_silver": rows["silver"],
                "duplicates_removed": rows["bronze"] - rows["silver"],
                "sync_status": "synced",
                "sync_step": None,
                "last_error": None,
                "last_sync_at": now,
            },
            run={"status": "synced", "step": None, "finished_at": now},
            tables=[
                (layer, TableResult(table=state.table, location=state.location, row_count=rows[layer]))
                for layer, state in (("bronze", states.bronze), ("silver", states.silver))
            ],
        )

    _finish_step("metadata", ctx, rows["silver"], outcome)
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


def _fail(conn: Connection, dataset_id: uuid.UUID, run_id: uuid.UUID, step: str, message: str, now: datetime) -> None:
    progress.upsert_step(conn, run_id, step, status="failed", error=message, finished_at=now)
    progress.set_dataset(conn, dataset_id, last_error=message, sync_status="failed", sync_step=step)
    progress.set_run(conn, run_id, status="failed", error=message, finished_at=now)


def record_step_error(
    step: str, dataset_id: uuid.UUID, run_id: uuid.UUID, exc: BaseException, *, final: bool, retry_in: float = 0.0
) -> None:
    """Write a step's error; a final one fails the run and the dataset's sync."""
    message = step_error_text(step, exc)
    log.warning("step %s of dataset %s failed (final: %s): %s", step, dataset_id, final, log_detail(exc))
    recorded = quick_retrying()(_record_error, step, dataset_id, run_id, message, final, retry_in, utcnow())
    if recorded and final:
        run_ended("failed")  # counted once committed


def _record_error(
    step: str, dataset_id: uuid.UUID, run_id: uuid.UUID, message: str, final: bool, retry_in: float, now: datetime
) -> bool:
    """One transaction of record_step_error; False when the run was superseded."""
    with transaction() as conn:
        if progress.current(conn, dataset_id, run_id, step) is None:
            return False
        if final:
            _fail(conn, dataset_id, run_id, step, message, now)
        else:
            progress.upsert_step(conn, run_id, step, status="retrying", error=message)
            progress.set_dataset(conn, dataset_id, last_error=message)
            # The run is alive until its retry is due; the sweeper waits that long.
            progress.set_run(conn, run_id, heartbeat_at=now + timedelta(seconds=retry_in))
        return True


PERMANENT_ERRORS = (PermanentSyncError, PermanentTargetError)
