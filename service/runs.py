"""Asking for sync runs and handing them to the broker once the request's data is committed.

The run row is written in the same transaction as the dataset, so the intent to sync is
never lost; the chain is published only after that transaction commits. A run that could
not be published (broker away) keeps ``published_at`` empty for the relay to send later.
"""
from __future__ import annotations

import logging
import uuid

import kombu.exceptions
import redis.exceptions
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from service.db import session_scope
from service.models import Dataset, SyncRun, utcnow

log = logging.getLogger(__name__)

_PENDING_KEY = "lakesync_runs_to_publish"

# What a publish raises when the broker is away; the run then waits for the relay.
PUBLISH_ERRORS = (kombu.exceptions.OperationalError, redis.exceptions.RedisError, OSError)


def request_run(session: Session, dataset: Dataset, *, trigger: str) -> SyncRun:
    """Make a new run the dataset's current one; it is published after commit."""
    run = SyncRun(id=uuid.uuid4(), dataset_id=dataset.id, trigger=trigger, status="pending")
    session.add(run)
    dataset.current_run_id = run.id
    dataset.sync_status = "pending"
    dataset.sync_step = None
    dataset.sync_attempts = 0
    session.info.setdefault(_PENDING_KEY, []).append((str(dataset.id), str(run.id)))
    return run


@event.listens_for(Session, "after_commit")
def _publish_after_commit(session: Session) -> None:
    runs = session.info.pop(_PENDING_KEY, [])
    for dataset_id, run_id in runs:
        publish(dataset_id, run_id)


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


def publish(dataset_id: str, run_id: str) -> bool:
    """Send the chain to the broker; False (logged) when the broker cannot take it now."""
    from celery import chain

    from tasks import sync as sync_tasks

    args = (dataset_id, run_id)
    try:
        chain(
            sync_tasks.bronze.si(*args),
            sync_tasks.silver.si(*args),
            sync_tasks.metadata.si(*args),
        ).apply_async()
    except PUBLISH_ERRORS as exc:
        log.warning("could not publish sync run %s of dataset %s: %s", run_id, dataset_id, exc)
        return False
    with session_scope() as session:
        session.execute(update(SyncRun).where(SyncRun.id == uuid.UUID(run_id)).values(published_at=utcnow()))
    return True
