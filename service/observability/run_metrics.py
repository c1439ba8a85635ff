"""Counts sync runs as they end.

A run ends in several places (the last step succeeds, a step fails for good, a step that
keeps killing its worker is given up); each calls ``run_ended`` once the transaction that
wrote the run's final status has committed, so a transaction retried after a rollback
counts once.
"""

from __future__ import annotations

from service.observability import metrics

FINAL_STATUSES = ("synced", "failed")


def run_ended(status: str) -> None:
    if status in FINAL_STATUSES:
        metrics.worker().runs.labels(status).inc()
