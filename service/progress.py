"""How a sync run's progress is written to PostgreSQL: the rows of the dataset, its run,
the run's steps and the dataset's recorded tables.

Plain SQL statements, built once, on the connection of one transaction: for a small
dataset, building statements and the ORM's loading and flushing cost more CPU than the
target's work of a step.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Row, Table, and_, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from service.lakehouse import TableRef
from service.lakehouse.base import TableResult
from service.models import Dataset, LakehouseTable, SyncRun, SyncStepRun, Tenant

_datasets = cast(Table, Dataset.__table__)
_runs = cast(Table, SyncRun.__table__)
_steps = cast(Table, SyncStepRun.__table__)
_tables = cast(Table, LakehouseTable.__table__)
_tenants = cast(Table, Tenant.__table__)

# The dataset's recorded tables as one JSON value of the same row, rather than a query of
# their own.
_RECORDED_TABLES = (
    select(func.json_agg(func.json_build_array(_tables.c.layer, _tables.c.catalog, _tables.c.schema, _tables.c.table)))
    .where(_tables.c.dataset_id == _datasets.c.id)
    .correlate(_datasets)
    .scalar_subquery()
)

_CURRENT = (
    select(
        _datasets.c.id,
        _datasets.c.tenant_id,
        _datasets.c.name,
        _datasets.c.file_name,
        _datasets.c.columns,
        _datasets.c.row_count,
        _datasets.c.schema_hints,
        _datasets.c.row_count_bronze,
        _datasets.c.row_count_silver,
        _datasets.c.bad_row_count,
        _datasets.c.current_run_id,
        _runs.c.status.label("run_status"),
        _runs.c.started_at.label("run_started_at"),
        _tenants.c.slug.label("tenant_slug"),
        _steps.c.status.label("step_status"),
        _steps.c.attempts.label("step_attempts"),
        _RECORDED_TABLES.label("recorded"),
    )
    .select_from(
        _datasets.join(_runs, _runs.c.dataset_id == _datasets.c.id)
        .join(_tenants, _tenants.c.id == _datasets.c.tenant_id)
        .outerjoin(_steps, and_(_steps.c.run_id == _runs.c.id, _steps.c.step == bindparam("step_name")))
    )
    .where(_datasets.c.id == bindparam("dataset_key"), _runs.c.id == bindparam("run_key"))
    .with_for_update(of=(_datasets, _runs))
)

# Executed with the columns to set as parameters, besides the key.
_UPDATE_DATASET = update(_datasets).where(_datasets.c.id == bindparam("dataset_key"))
_UPDATE_RUN = update(_runs).where(_runs.c.id == bindparam("run_key"))
_UPDATE_STEP = update(_steps).where(_steps.c.run_id == bindparam("run_key"), _steps.c.step == bindparam("step_name"))

_START_STEP = pg_insert(_steps).values(
    run_id=bindparam("run_key"), step=bindparam("step_name"), status="running", attempts=1, started_at=bindparam("now")
)
_START_STEP = _START_STEP.on_conflict_do_update(
    index_elements=[_steps.c.run_id, _steps.c.step],
    set_={
        "status": "running",
        "attempts": _steps.c.attempts + 1,
        "started_at": func.coalesce(_steps.c.started_at, _START_STEP.excluded.started_at),
        "finished_at": None,
    },
)
_START_RUN = (
    update(_runs)
    .where(_runs.c.id == bindparam("run_key"))
    .values(
        status="syncing",
        step=bindparam("step_name"),
        started_at=func.coalesce(_runs.c.started_at, bindparam("now")),
        heartbeat_at=bindparam("now"),
    )
    .returning(_runs.c.started_at)
)
_START_DATASET = (
    update(_datasets)
    .where(_datasets.c.id == bindparam("dataset_key"))
    .values(sync_status="syncing", sync_step=bindparam("step_name"), sync_attempts=_datasets.c.sync_attempts + 1)
)

_TABLE_FIELDS = ("target", "catalog", "schema", "table", "full_name", "location", "row_count")
_RECORD_TABLE = pg_insert(_tables)
_RECORD_TABLE = _RECORD_TABLE.on_conflict_do_update(
    index_elements=[_tables.c.dataset_id, _tables.c.layer],
    set_={**{name: _RECORD_TABLE.excluded[name] for name in _TABLE_FIELDS}, "updated_at": func.now()},
)


def current(conn: Connection, dataset_id: uuid.UUID, run_id: uuid.UUID, step: str) -> Row | None:
    """The dataset's and run's fields (both rows locked), the tenant's slug, the step's status
    and attempts, and the recorded tables (``recorded``, a list of [layer, catalog, schema,
    table]); None when the run is no longer the dataset's current one, or is finished."""
    found = conn.execute(_CURRENT, {"dataset_key": dataset_id, "run_key": run_id, "step_name": step}).first()
    if found is None or found.current_run_id != run_id or found.run_status in ("synced", "failed"):
        return None
    return found


def recorded_tables(found: Row) -> dict[str, TableRef]:
    """The tables of a ``current`` row, by layer."""
    return {layer: TableRef(catalog, schema, table) for layer, catalog, schema, table in found.recorded or ()}


def start_step(conn: Connection, dataset_id: uuid.UUID, run_id: uuid.UUID, step: str, now: datetime) -> datetime:
    """Mark the step, its run and its dataset as running; the run's start time."""
    params = {"dataset_key": dataset_id, "run_key": run_id, "step_name": step, "now": now}
    conn.execute(_START_STEP, params)
    started = conn.execute(_START_RUN, params).scalar_one()
    conn.execute(_START_DATASET, params)
    return started


def set_dataset(conn: Connection, dataset_id: uuid.UUID, **values) -> None:
    conn.execute(_UPDATE_DATASET, {"dataset_key": dataset_id, **values})


def set_run(conn: Connection, run_id: uuid.UUID, **values) -> None:
    conn.execute(_UPDATE_RUN, {"run_key": run_id, **values})


def set_step(conn: Connection, run_id: uuid.UUID, step: str, **values) -> None:
    """Write the step's row, which ``start_step`` added."""
    conn.execute(_UPDATE_STEP, {"run_key": run_id, "step_name": step, **values})


def upsert_step(conn: Connection, run_id: uuid.UUID, step: str, **values) -> None:
    """Write the step's row, adding it when the step never started."""
    conn.execute(
        pg_insert(_steps)
        .values(run_id=run_id, step=step, attempts=0, **values)
        .on_conflict_do_update(index_elements=[_steps.c.run_id, _steps.c.step], set_=values)
    )


def record_table(conn: Connection, dataset_id: uuid.UUID, layer: str, target: str, result: TableResult) -> None:
    """Record where a layer's table is: one INSERT ... ON CONFLICT, not a read and a write."""
    table = result.table
    conn.execute(
        _RECORD_TABLE,
        {
            "dataset_id": dataset_id,
            "layer": layer,
            "target": target,
            "catalog": table.catalog,
            "schema": table.schema,
            "table": table.table,
            "full_name": table.full_name,
            "location": result.location,
            "row_count": result.row_count,
        },
    )
