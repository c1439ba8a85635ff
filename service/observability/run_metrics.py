"""Counts sync runs as they end, from the run records the steps already write.

A run ends in several places (the last step succeeds, a step fails for good, a step that
keeps killing its worker is given up); all of them set ``SyncRun.status``. The change is
counted when its transaction commits, so a transaction retried after a rollback counts once.
"""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.orm import Session, object_session

from service.models import SyncRun
from service.observability import metrics

FINAL_STATUSES = ("synced", "failed")
_ENDED_KEY = "lakesync_runs_ended"


@event.listens_for(SyncRun.status, "set")
def _status_set(run: SyncRun, value, oldvalue, _initiator) -> None:
    if value in FINAL_STATUSES and value != oldvalue:
        session = object_session(run)
        if session is not None:
            session.info.setdefault(_ENDED_KEY, []).append(value)


@event.listens_for(Session, "after_commit")
def _count_ended(session: Session) -> None:
    for status in session.info.pop(_ENDED_KEY, []):
        metrics.worker().runs.labels(status).inc()


@event.listens_for(Session, "after_rollback")
def _forget_ended(session: Session) -> None:
    session.info.pop(_ENDED_KEY, None)
