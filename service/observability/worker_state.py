"""Gauges read when the worker's metrics are scraped: broker queue lengths, datasets by
sync status and stuck runs. They are facts of the broker and the database, not of one
process, so they are read fresh rather than kept in the worker's files."""

from __future__ import annotations

import logging
from datetime import timedelta

from kombu.exceptions import ChannelError
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from service.db import session_scope
from service.models import SYNC_STATUSES, Dataset, SyncRun, utcnow

log = logging.getLogger(__name__)


class WorkerStateCollector:
    def __init__(self, celery_app, stuck_timeout: float) -> None:
        self.celery = celery_app
        self.stuck_timeout = stuck_timeout
        self.queues = [q.name for q in (celery_app.conf.task_queues or ())] or [celery_app.conf.task_default_queue]

    def collect(self):
        try:
            yield self._queue_lengths()
        except Exception as exc:  # a scrape shows what it can; the broker may be away
            log.warning("queue lengths not collected: %s", exc)
        try:
            yield from self._database_state()
        except Exception as exc:
            log.warning("dataset and run counts not collected: %s", exc)

    def _queue_lengths(self) -> GaugeMetricFamily:
        gauge = GaugeMetricFamily("lakesync_queue_length", "Messages waiting in a broker queue", labels=["queue"])
        with self.celery.connection_for_read() as conn:
            channel = conn.default_channel
            for name in self.queues:
                try:
                    waiting = channel.queue_declare(queue=name, passive=True).message_count
                except ChannelError:
                    waiting = 0  # Redis drops an empty queue's list
                gauge.add_metric([name], waiting)
        return gauge

    def _database_state(self):
        last_move = func.coalesce(SyncRun.heartbeat_at, SyncRun.published_at)
        with session_scope() as session:
            by_status = dict(
                session.execute(select(Dataset.sync_status, func.count()).group_by(Dataset.sync_status)).all()
            )
            # The sweeper's own condition for a run to re-send.
            stuck = session.scalar(
                select(func.count())
                .select_from(SyncRun)
                .join(Dataset, Dataset.current_run_id == SyncRun.id)
                .where(
                    SyncRun.status.in_(("pending", "syncing")),
                    SyncRun.published_at.is_not(None),
                    last_move < utcnow() - timedelta(seconds=self.stuck_timeout),
                )
            )
        datasets = GaugeMetricFamily("lakesync_datasets", "Datasets by sync status", labels=["status"])
        for status in SYNC_STATUSES:
            datasets.add_metric([status], by_status.get(status, 0))
        yield datasets
        yield GaugeMetricFamily(
            "lakesync_sync_runs_stuck",
            f"Current runs that have not moved for SYNC_STUCK_TIMEOUT ({self.stuck_timeout:g} s)",
            value=stuck or 0,
        )
