"""Celery settings: one mapping, built from the app's config by ``celery_settings``.

``service.create_app`` stores it as ``app.config["CELERY"]`` and ``celery_init_app`` loads
it, so the worker, beat and the API's publisher read every setting from one place.
"""

from __future__ import annotations

from collections.abc import Mapping

from kombu import Queue

# Settings that do not depend on the deployment.
STATIC_SETTINGS: dict = {
    # Late acknowledgement: a message is acknowledged only when its task finishes, so a
    # worker that dies mid-step leaves the message to be delivered again.
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    # Publishing must not hang an upload when Redis is away.
    "broker_connection_timeout": 5,
    "broker_connection_retry_on_startup": True,
    "task_publish_retry": True,
    "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    # Results are written to PostgreSQL by the steps themselves; Celery keeps none.
    "task_ignore_result": True,
    "task_store_errors_even_if_ignored": False,
    # Events for Flower.
    "worker_send_task_events": True,
    "task_send_sent_event": True,
    "task_track_started": True,
    "timezone": "UTC",
    "enable_utc": True,
    "worker_hijack_root_logger": False,
    # A chain's later steps get their own queue, read before the default one, so a started
    # sync finishes instead of waiting behind every upload queued after it. The queue holds
    # at most two steps per started sync, so bronze steps are never starved.
    "task_default_queue": "celery",
    "task_queues": (Queue("sync.continue"), Queue("celery")),
    "task_routes": {
        "sync.silver": {"queue": "sync.continue"},
        "sync.metadata": {"queue": "sync.continue"},
    },
    # The task modules a worker registers.
    "imports": ("tasks.sync", "tasks.uploads"),
}


def celery_settings(config: Mapping) -> dict:
    """The Celery settings of an app whose config is ``config``."""
    return {
        **STATIC_SETTINGS,
        "broker_url": config["REDIS_URL"],
        "broker_transport_options": {
            # Retry countdowns stay under half of this (service.retry), so a message that
            # waits for its retry is never delivered twice by the visibility timeout.
            "visibility_timeout": int(config["BROKER_VISIBILITY_TIMEOUT"]),
            "socket_timeout": 5,
            "socket_connect_timeout": 5,
            # Queues are read in the order of task_queues, not in turn.
            "queue_order_strategy": "priority",
        },
        "beat_schedule": {
            "relay-unpublished-runs": {"task": "sync.relay", "schedule": float(config["SYNC_RELAY_INTERVAL"])},
            "sweep-stuck-runs": {"task": "sync.sweep", "schedule": float(config["SYNC_SWEEP_INTERVAL"])},
            "remove-upload-leftovers": {"task": "uploads.remove_leftovers", "schedule": 3600.0},
        },
    }
