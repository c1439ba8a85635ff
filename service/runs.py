"""Asking for sync runs and handing them to the broker once the request's data is committed.

The run row is written in the same transaction as the dataset, so the intent to sync is
never lost; the chain is published only after that transaction commits. A run that could
not be published (broker away) keeps ``published_at`` empty for the relay to send later.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc
from celery import chain
from flask import current_app
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from service.db import autocommit_connection, session_scope
from service.locks import is_locked
from service.models import Dataset, SyncRun, utcnow
from service.observability import context

log = logging.getLogger(__name__)

_PENDING_KEY = "lakesync_runs_to_publish"
STEP_ORDER = ("bronze", "silver", "metadata")
# Longest wait between two re-sends of the same stuck run.
MAX_SWEEP_SPACING = 3600.0

# What a publish raises when the broker is away; the run then waits for the relay.
PUBLISH_ERRORS = (kombu.exceptions.OperationalError, redis.exceptions.RedisError, OSError)


def request_run(session: Session, dataset: Dataset, *, trigger: str) -> SyncRun:
    """Make a new run the dataset's current one; it is published after commit."""
    # The id of the request asking for it; a run asked for outside a request gets its own.
    request_id = context.request_id() or context.new_request_id()
    run = SyncRun(id=uuid.uuid4(), dataset_id=dataset.id, trigger=trigger, status="pending", request_id=request_id)
    session.add(run)
    dataset.current_run_id = run.id
    dataset.sync_status = "pending"
    dataset.sync_step = None
    dataset.sync_attempts = 0
    session.info.setdefault(_PENDING_KEY, []).append((str(dataset.id), str(run.id), request_id))
    return run


@event.listens_for(Session, "after_commit")
def _publish_after_commit(session: Session) -> None:
    runs = session.info.pop(_PENDING_KEY, [])
    for dataset_id, run_id, request_id in runs:
        try:
            publish(dataset_id, run_id, request_id=request_id)
        except Exception:
            # The run is committed: whatever fails here, the relay publishes it later. An
            # error raised from a commit hook would reach the caller as a failed commit.
            log.exception(
                "publishing sync run %s of dataset %s after commit failed; the relay will", run_id, dataset_id
            )


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


def publish(dataset_id: str, run_id: str, from_step: str = "bronze", request_id: str | None = None) -> bool:
    """Send the chain (from ``from_step`` on) to the broker, its messages carrying the run's
    request id; False, logged, when the broker cannot take it now."""
    celery_app = current_app.extensions["celery"]
    args = (dataset_id, run_id)
    steps = STEP_ORDER[STEP_ORDER.index(from_step) :]
    # By task name: the API publishes tasks it never imports.
    try:
        with context.bound(request_id=request_id, dataset_id=dataset_id, run_id=run_id):
            chain(*(celery_app.signature(f"sync.{step}", args=args, immutable=True) for step in steps)).apply_async()
    except PUBLISH_ERRORS as exc:
        log.warning("could not publish sync run %s of dataset %s: %s", run_id, dataset_id, exc)
        return False
    try:
        with autocommit_connection() as conn:
            conn.execute(update(SyncRun).where(SyncRun.id == uuid.UUID(run_id)).values(published_at=utcnow()))
    except sqlalchemy.exc.SQLAlchemyError as exc:
        # Sent but not marked: the relay may send it again, which the steps skip as done.
        log.warning("sync run %s of dataset %s was published but not marked so: %s", run_id, dataset_id, exc)
    return True


def relay_unpublished(min_age: float = 5.0, batch: int = 500) -> int:
    """Publish pending runs that were committed but never reached the broker."""
    cutoff = utcnow() - timedelta(seconds=min_age)
    with session_scope() as session:
        rows = session.execute(
            select(SyncRun.id, SyncRun.dataset_id, SyncRun.request_id)
            .join(Dataset, Dataset.current_run_id == SyncRun.id)
            .where(SyncRun.published_at.is_(None), SyncRun.status == "pending", SyncRun.created_at < cutoff)
            .order_by(SyncRun.created_at)
            .limit(batch)
        ).all()
    published = 0
    for run_id, dataset_id, request_id in rows:
        if not publish(str(dataset_id), str(run_id), request_id=request_id):
            break  # the broker is still away; the next relay tries again
        published += 1
    return published


def sweep_stuck() -> dict:
    """Re-enqueue current runs that have not moved for SYNC_STUCK_TIMEOUT seconds.

    A run whose dataset lock is held is alive (a step is working on it) and is left alone.
    A run that merely waits behind a long queue looks the same as one whose message was
    lost, so re-sending is harmless (steps already done are skipped) and spaced out
    exponentially per run. Crash loops end in begin_step, which counts step starts.
    """
    timeout = float(current_app.config["SYNC_STUCK_TIMEOUT"])
    now = utcnow()
    last_move = func.coalesce(SyncRun.heartbeat_at, SyncRun.published_at)
    with session_scope() as session:
        candidates = session.execute(
            select(SyncRun.id, SyncRun.dataset_id)
            .join(Dataset, Dataset.current_run_id == SyncRun.id)
            .where(
                SyncRun.status.in_(("pending", "syncing")),
                SyncRun.published_at.is_not(None),
                last_move < now - timedelta(seconds=timeout),
            )
        ).all()
    resent = 0
    for run_id, dataset_id in candidates:
        if is_locked(dataset_id):
            continue
        with session_scope() as session:
            run = session.get(SyncRun, run_id, with_for_update=True)
            dataset = session.get(Dataset, dataset_id)
            if (
                run is None
                or dataset is None
                or dataset.current_run_id != run.id
                or run.status not in ("pending", "syncing")
            ):
                continue
            wait = min(timeout * 2**run.deliveries, MAX_SWEEP_SPACING)
            move = run.heartbeat_at or run.published_at
            if move is None or move >= utcnow() - timedelta(seconds=wait):
                continue  # moved meanwhile, or re-sent recently
            done = {s.step for s in run.steps if s.status == "succeeded"}
            from_step = next(s for s in STEP_ORDER if s not in done)
            run.deliveries += 1
            run.heartbeat_at = utcnow()
            request_id = run.request_id
        log.warning("re-enqueuing stuck sync run %s of dataset %s from %s", run_id, dataset_id, from_step)
        if publish(str(dataset_id), str(run_id), from_step=from_step, request_id=request_id):
            resent += 1
    return {"resent": resent}
