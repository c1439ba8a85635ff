"""The sync chain: ``sync.bronze`` → ``sync.silver`` → ``sync.metadata``.

Each task takes ids, calls the step in ``service.sync`` and returns JSON-safe data.
Transient errors are retried through the broker with a backoff countdown; anything else,
or a transient error that outlives its attempts, fails the run with a readable reason.
"""

from __future__ import annotations

import logging
import uuid

from celery import Task, shared_task
from flask import current_app

from service import runs, sync
from service.retry import TRANSIENT_ERRORS, StepRetryPolicy

log = logging.getLogger(__name__)


def _record(step: str, ds_id: uuid.UUID, r_id: uuid.UUID, exc: BaseException, **kwargs) -> None:
    try:
        sync.record_step_error(step, ds_id, r_id, exc, **kwargs)
    except TRANSIENT_ERRORS as record_exc:
        # PostgreSQL is away too: the retry (or the sweeper) carries the run on.
        log.warning("could not record the error of %s for dataset %s: %s", step, ds_id, record_exc)


def _run_step(task: Task, step: str, dataset_id: str, run_id: str) -> dict:
    ds_id, r_id = uuid.UUID(dataset_id), uuid.UUID(run_id)
    attempt = task.request.retries + 1
    try:
        return sync.STEPS[step](ds_id, r_id)
    except Exception as exc:
        policy = StepRetryPolicy.from_config(current_app.config)
        if policy.should_retry(exc, attempt):
            # A server that said when to come back (Retry-After) is not asked sooner.
            countdown = min(max(policy.countdown(attempt), float(getattr(exc, "retry_after", 0) or 0)), policy.max_wait)
            log.warning(
                "%s of dataset %s failed (attempt %d), retrying in %.1fs: %s", step, dataset_id, attempt, countdown, exc
            )
            _record(step, ds_id, r_id, exc, final=False, retry_in=countdown)
            raise task.retry(exc=exc, countdown=countdown) from exc
        log.error("%s of dataset %s failed for good (attempt %d): %s", step, dataset_id, attempt, exc)
        _record(step, ds_id, r_id, exc, final=True)
        raise


@shared_task(bind=True, name="sync.bronze", max_retries=None)
def bronze(self: Task, dataset_id: str, run_id: str) -> dict:
    return _run_step(self, "bronze", dataset_id, run_id)


@shared_task(bind=True, name="sync.silver", max_retries=None)
def silver(self: Task, dataset_id: str, run_id: str) -> dict:
    return _run_step(self, "silver", dataset_id, run_id)


@shared_task(bind=True, name="sync.metadata", max_retries=None)
def metadata(self: Task, dataset_id: str, run_id: str) -> dict:
    return _run_step(self, "metadata", dataset_id, run_id)


@shared_task(name="sync.relay")
def relay() -> dict:
    """Publish runs whose chain never reached the broker (e.g. Redis was down at upload)."""
    return {"published": runs.relay_unpublished()}


@shared_task(name="sync.sweep")
def sweep() -> dict:
    """Send again the runs that stopped moving (a worker died, the broker lost a message)."""
    return runs.sweep_stuck()
