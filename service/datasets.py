"""Datasets: accepting an upload, finding a tenant's datasets, previewing rows."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import pyarrow.parquet as pq
from flask import current_app
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, selectinload

from service.config import as_bool
from service.db import session_scope
from service.duckdb_shared import STALE_SECONDS, remove_stale
from service.errors import Conflict, IngestError, NotFound
from service.ingest import ConvertResult, IngestSettings, convert_body, convert_file
from service.ingest.output import SCRATCH_PREFIX
from service.locks import dataset_lock
from service.models import LOCAL_ONLY, BadRow, Dataset, LakehouseTable, SyncRun, Tenant, utcnow
from service.runs import request_run
from service.runtime import runtime
from service.storage import FileStore
from service.sync import context_for, dataset_tables
from service.transform import snake_case_names
from service.transform.hints import HintError
from service.transform.hints import resolve as resolve_hints

log = logging.getLogger(__name__)

# An upload's work files live for the length of its request; older ones were left by an
# API process killed mid-upload.
LEFTOVER_SECONDS = STALE_SECONDS


def sync_enabled(config: Mapping) -> bool:
    return as_bool(config.get("SYNC_ENABLED", True), "SYNC_ENABLED")


def auto_sync(config: Mapping) -> bool:
    return as_bool(config.get("AUTO_SYNC", True), "AUTO_SYNC")


def upload_syncs(config: Mapping, requested: bool | None) -> bool:
    """Whether an upload starts its sync: never while syncing is off, else as the upload asks,
    else as AUTO_SYNC says."""
    if not sync_enabled(config):
        return False
    if requested is not None:
        return requested
    return auto_sync(config)


def _require_sync_enabled() -> None:
    if not sync_enabled(current_app.config):
        raise Conflict(
            "syncing is turned off (SYNC_ENABLED=false): datasets are stored and previewable but not synced; "
            "ask again once it is turned on",
            code="sync_disabled",
        )


def _columns(result: ConvertResult) -> list[dict]:
    names = snake_case_names([c.name for c in result.columns])
    return [
        {"name": name, "source_name": col.name, "type": col.type, "source_type": col.type}
        for name, col in zip(names, result.columns)
    ]


def _hints_for(hints: dict | None, columns: list[dict]) -> dict[str, str]:
    """The upload's schema hints by source column; 422 naming a column the data does not have."""
    if not hints:
        return {}
    try:
        return resolve_hints(hints, columns)
    except HintError as exc:
        raise IngestError(
            str(exc), code="validation_error", status=422, details={"schema_hints": exc.problems}
        ) from None


def _detected(result: ConvertResult) -> dict | None:
    found = {
        "dialect": result.dialect,
        "records_path": result.records_path,
        "compression": result.compression,
        "sheet": result.sheet,
    }
    return {k: v for k, v in found.items() if v is not None} or None


def _store_new(store: FileStore, tenant: Tenant, convert: Callable[[Path], tuple[dict, ConvertResult]]) -> Dataset:
    """Convert into the store, then commit the dataset and, when it is to sync, its first run
    together; otherwise it is committed ``local_only``, with no run.

    ``convert`` writes the Parquet file and returns the dataset's labels (``name``,
    ``description``, ``original_file_name``, and ``sync``: whether it is to sync) with the
    result.

    The file is stored (on an object store: uploaded) before the commit, and the sync chain
    is published only after it; on any error the file is removed wherever it got to, so a
    rejected upload leaves nothing behind.
    """
    dataset_id = uuid.uuid4()
    file_name = store.file_name_for(dataset_id)
    dest = store.write_path(file_name)
    try:
        try:
            labels, result = convert(dest)
            sync = bool(labels["sync"])
        except UnicodeEncodeError as exc:
            # JSON escapes can spell lone surrogates (e.g. "\\ud800"), which are not text.
            raise IngestError(
                f"the data contains an unpaired Unicode surrogate ({exc.object[exc.start : exc.end]!r}); "
                "text must be valid Unicode",
                code="invalid_text",
            ) from exc
        bad = [c.name for c in result.columns if "\x00" in c.name]
        if bad:
            raise IngestError(
                "column names may not contain NUL characters", code="invalid_column_name", details={"columns": bad}
            )
        columns = _columns(result)
        hints = _hints_for(labels.get("schema_hints"), columns)
        store.publish(file_name)
        with session_scope() as session:
            dataset = Dataset(
                id=dataset_id,
                tenant_id=tenant.id,
                name=labels["name"],
                description=labels.get("description"),
                source_format=result.source_format,
                original_file_name=labels.get("original_file_name"),
                file_name=file_name,
                size_bytes=result.size_bytes,
                row_count=result.row_count,
                columns=[{**c, "type": hints.get(c["source_name"], c["type"])} for c in columns],
                schema_hints=hints or None,
                sync_status="pending" if sync else LOCAL_ONLY,
                ingest=_detected(result),
                bad_row_count=len(result.bad_rows),
            )
            session.add(dataset)
            if sync:
                # Before the first flush: the dataset is inserted with its current run in one
                # statement, no UPDATE after.
                request_run(session, dataset, trigger="upload")
            if result.bad_rows:
                session.flush()  # after the dataset and its run: bad rows reference it
                session.execute(
                    insert(BadRow),
                    [
                        {"dataset_id": dataset_id, "line": r.line, "reason": r.reason, "raw": r.raw}
                        for r in result.bad_rows
                    ],
                )
    except BaseException:
        store.discard(file_name)
        raise
    return dataset


def _fit(text: str | None, length: int, *, keep_extension: bool = False) -> str | None:
    """``text`` cut to a column's length; a file name keeps its extension (a short one)."""
    if text is None or len(text) <= length:
        return text
    suffix = Path(text).suffix if keep_extension else ""
    if len(suffix) > length // 4:
        suffix = ""
    return text[: length - len(suffix)] + suffix


def create_from_file(
    store: FileStore,
    settings: IngestSettings,
    tenant: Tenant,
    src: Path,
    *,
    original_file_name: str | None,
    name: str | None,
    description: str | None,
    sync: bool,
    extension: str | None = None,
    sheet: str | None = None,
    records_path: str | None = None,
    bad_rows: str = "reject",
    schema_hints: dict[str, str] | None = None,
) -> Dataset:
    """A dataset from the uploaded file at ``src``. ``extension`` (a raw-body upload's, from
    its Content-Type) stands in for the file name's as the hint of the format."""
    stem = Path(original_file_name or "").stem if original_file_name else ""
    # The client's file name is kept as a label: cut to its column, never refused for length.
    labels = {
        "name": name or _fit(stem, Dataset.name.type.length) or "dataset",
        "description": description,
        "original_file_name": _fit(original_file_name, Dataset.original_file_name.type.length, keep_extension=True),
        "sync": sync,
        "schema_hints": schema_hints,
    }
    hint = original_file_name if extension is None else f"{stem or 'upload'}{extension}"
    return _store_new(
        store,
        tenant,
        lambda dest: (
            labels,
            convert_file(
                src, dest, file_name=hint, settings=settings, sheet=sheet, records_path=records_path, bad_rows=bad_rows
            ),
        ),
    )


def remove_upload_leftovers(
    store: FileStore, scratch_dir: str | os.PathLike | None, *, older_than: float = LEFTOVER_SECONDS
) -> int:
    """Delete the work files of uploads cut short (spooled bodies, half-written Parquet
    files, scratch copies) not modified for ``older_than`` seconds; the number deleted."""
    places = store.leftover_places()
    if scratch_dir is not None:
        places.append((Path(scratch_dir), SCRATCH_PREFIX, ""))
    removed = sum(
        remove_stale(directory, prefix, suffix, older_than=older_than) for directory, prefix, suffix in places
    )
    if removed:
        log.warning("removed %d work files of uploads cut short", removed)
    return removed


def create_from_body(
    store: FileStore,
    settings: IngestSettings,
    tenant: Tenant,
    src: Path,
    *,
    validate: Callable[[dict], dict],
) -> Dataset:
    """A dataset from a JSON body ``{"name", "description", "records", "sync"}`` spooled at
    ``src``, parsed as a stream. ``validate`` checks the members other than the records,
    raising for bad ones, and returns the dataset's labels (``sync`` included)."""
    return _store_new(store, tenant, lambda dest: convert_body(src, dest, validate=validate, settings=settings))


def bad_rows_page(session: Session, dataset: Dataset, *, limit: int, offset: int) -> list[BadRow]:
    """The dataset's set-aside rows in line order."""
    query = select(BadRow).where(BadRow.dataset_id == dataset.id).order_by(BadRow.line)
    return list(session.scalars(query.limit(limit).offset(offset)))


def get_for_tenant(session: Session, tenant_id: uuid.UUID, dataset_id: uuid.UUID, *, lock: bool = False) -> Dataset:
    """A tenant's dataset; another tenant's id is answered as not found."""
    query = select(Dataset).where(Dataset.id == dataset_id, Dataset.tenant_id == tenant_id)
    if lock:
        # Serialises concurrent resyncs of one dataset: the second sees the first's run.
        query = query.with_for_update(of=Dataset)
    dataset = session.scalar(query.options(selectinload(Dataset.tables)))
    if dataset is None:
        raise NotFound(f"dataset {dataset_id} not found")
    return dataset


def list_for_tenant(
    session: Session, tenant_id: uuid.UUID, *, limit: int, offset: int, status: str | None
) -> tuple[list[Dataset], int]:
    query = select(Dataset).where(Dataset.tenant_id == tenant_id)
    if status:
        query = query.where(Dataset.sync_status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(query.order_by(Dataset.created_at.desc(), Dataset.id).limit(limit).offset(offset)).all()
    return list(rows), total or 0


def sync_status(session: Session, dataset: Dataset) -> dict:
    tables: dict[str, LakehouseTable] = {t.layer: t for t in dataset.tables}
    runs = session.scalars(
        select(SyncRun)
        .where(SyncRun.dataset_id == dataset.id)
        .options(selectinload(SyncRun.steps))
        .order_by(SyncRun.created_at.desc())
    ).all()
    current = next((r for r in runs if r.id == dataset.current_run_id), None)
    attempts = sum(s.attempts for s in current.steps) if current else 0

    def run_dict(run: SyncRun) -> dict:
        duration = None
        if run.started_at and run.finished_at:
            duration = int((run.finished_at - run.started_at).total_seconds() * 1000)
        return {
            "id": run.id,
            "trigger": run.trigger,
            "request_id": run.request_id,
            "status": run.status,
            "step": run.step,
            "error": run.error,
            "created_at": run.created_at,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "duration_ms": duration,
            "steps": [
                {
                    "step": s.step,
                    "status": s.status,
                    "attempts": s.attempts,
                    "started_at": s.started_at,
                    "finished_at": s.finished_at,
                    "duration_ms": s.duration_ms,
                    "rows": s.rows,
                    "error": s.error,
                }
                for s in sorted(run.steps, key=lambda s: ("bronze", "silver", "metadata").index(s.step))
            ],
        }

    bronze, silver = tables.get("bronze"), tables.get("silver")

    quarantine = tables.get("quarantine")
    return {
        "dataset_id": dataset.id,
        "status": dataset.sync_status,
        "step": dataset.sync_step,
        "attempts": attempts,
        "target": bronze.target if bronze else silver.target if silver else None,
        "bronze_table": bronze.full_name if bronze else None,
        "silver_table": silver.full_name if silver else None,
        "quarantine_table": quarantine.full_name if quarantine else None,
        "bad_row_count": dataset.bad_row_count,
        "values_rescued": dataset.values_rescued,
        "bronze_location": bronze.location if bronze else None,
        "silver_location": silver.location if silver else None,
        "row_count_local": dataset.row_count,
        "row_count_bronze": dataset.row_count_bronze,
        "row_count_silver": dataset.row_count_silver,
        "duplicates_removed": dataset.duplicates_removed,
        "last_sync_at": dataset.last_sync_at,
        "last_error": dataset.last_error,
        "runs": [run_dict(r) for r in runs],
    }


def _json_value(value):
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def preview_rows(source: Path | BinaryIO, *, limit: int, offset: int) -> tuple[list[str], list[dict], int]:
    """Rows [offset, offset+limit) of a Parquet file, decoded ``limit`` rows at a time from
    the row groups they sit in (ranged reads on an object store): a row group of large
    values is never decoded whole."""
    parquet = pq.ParquetFile(source, pre_buffer=False)
    meta = parquet.metadata
    total = meta.num_rows
    columns = parquet.schema_arrow.names
    wanted: list[int] = []
    start, first_row = 0, 0
    for index in range(meta.num_row_groups):
        size = meta.row_group(index).num_rows
        if start + size > offset and start < offset + limit:
            if not wanted:
                first_row = start
            wanted.append(index)
        start += size
    if not wanted:
        return columns, [], total
    skip, rows = offset - first_row, list[dict]()
    for batch in parquet.iter_batches(batch_size=limit, row_groups=wanted, use_threads=False):
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        part = batch.slice(skip, limit - len(rows))
        skip = 0
        rows.extend({k: _json_value(v) for k, v in row.items()} for row in part.to_pylist())
        if len(rows) >= limit:
            break
    return columns, rows, total


ACTIVE_STATUSES = ("pending", "syncing")


def request_resync(session: Session, dataset: Dataset, *, trigger: str = "manual") -> SyncRun:
    """Start a new run of the dataset (the first of a local-only one); 409 while one is still
    pending or running, or while syncing is turned off."""
    _require_sync_enabled()
    if dataset.sync_status in ACTIVE_STATUSES:
        raise Conflict(
            f"dataset {dataset.id} already has a sync {dataset.sync_status}; wait for it to finish",
            details={"sync_status": dataset.sync_status, "step": dataset.sync_step},
        )
    return request_run(session, dataset, trigger=trigger)


def resync_where(
    session: Session, *, tenant_id: uuid.UUID | None, status: str, trigger: str = "bulk"
) -> list[uuid.UUID]:
    """Start new runs for every dataset (of one tenant, or all) in ``status``."""
    _require_sync_enabled()
    if status in ACTIVE_STATUSES:
        raise Conflict(f"datasets that are {status} already have a sync under way")
    query = select(Dataset).where(Dataset.sync_status == status).with_for_update(skip_locked=True)
    if tenant_id is not None:
        query = query.where(Dataset.tenant_id == tenant_id)
    started = []
    for dataset in session.scalars(query):
        request_run(session, dataset, trigger=trigger)
        started.append(dataset.id)
    return started


def delete_dataset(tenant_id: uuid.UUID, dataset_id: uuid.UUID) -> None:
    """Remove the dataset's tables, local file and row.

    Ownership is checked before the lock, so another tenant's id is a 404 at once. Holding
    the dataset's lock waits for a step that is writing; steps that come later find no
    dataset and do nothing. Tables and file go first, so a failure leaves the row to delete
    again.
    """
    with session_scope() as session:
        get_for_tenant(session, tenant_id, dataset_id)
    rt = runtime()
    with dataset_lock(dataset_id, wait=60.0):
        with session_scope() as session:
            dataset = get_for_tenant(session, tenant_id, dataset_id)
            tenant = session.get_one(Tenant, dataset.tenant_id)
            ctx = context_for(dataset, tenant, run_id=dataset.current_run_id, ingested_at=utcnow())
            # A dataset that never had a run has no tables: the target need not be reachable.
            tables = dataset_tables(ctx, dataset, tenant) if dataset.current_run_id or dataset.tables else []
            file_name = dataset.file_name
        if tables:
            rt.target().drop_tables(ctx, tables)
        rt.store.remove(file_name)
        with session_scope() as session:
            gone = session.get(Dataset, dataset_id)
            if gone is not None:
                session.delete(gone)
