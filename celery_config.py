"""Celery settings. The broker URL comes from REDIS_URL (see service.config)."""
import os

from kombu import Queue

# Late acknowledgement: a message is acknowledged only when its task finishes, so a
# worker that dies mid-step leaves the message to be delivered again.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1

# Countdowns for retries are capped well below this (see service.retry), so a message
# that waits for its retry is never delivered twice by the visibility timeout.
broker_transport_options = {
    "visibility_timeout": int(os.environ.get("BROKER_VISIBILITY_TIMEOUT", 7200)),
    "socket_timeout": 5,
    "socket_connect_timeout": 5,
    # Queues are read in the order of task_queues, not in turn (see below).
    "queue_order_strategy": "priority",
}
# Publishing must not hang an upload when Redis is away.
broker_connection_timeout = 5
broker_connection_retry_on_startup = True
task_publish_retry = True
task_publish_retry_policy = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
# Results are written to PostgreSQL by the steps themselves; Celery keeps none.
task_ignore_result = True
task_store_errors_even_if_ignored = False

# Events for Flower.
worker_send_task_events = True
task_send_sent_event = True
task_track_started = True

timezone = "UTC"
enable_utc = True
worker_hijack_root_logger = False

# A chain's later steps get their own queue, read before the default one, so a started
# sync finishes instead of waiting behind every upload queued after it. (Read in turn,
# the later steps of a backlog waited for the bronze steps of every upload and finished
# in a burst at the end.) The queue holds at most two steps per started sync, so bronze
# steps are never starved.
task_default_queue = "celery"
task_queues = (Queue("sync.continue"), Queue("celery"))
task_routes = {
    "sync.silver": {"queue": "sync.continue"},
    "sync.metadata": {"queue": "sync.continue"},
}
