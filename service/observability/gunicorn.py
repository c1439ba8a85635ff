"""gunicorn settings of the API: ``gunicorn -c python:service.observability.gunicorn wsgi:app``.

The master empties the API's metrics directory before it forks its workers, forgets a
dead worker's live gauges, and writes its own lines in ``LOG_FORMAT``. Requests are
logged by the app (``lakesync.http``, with the request id), so gunicorn's access log is off.
"""

from __future__ import annotations

import os

from gunicorn.glogging import Logger

from service.config import from_env

accesslog = None


class LakesyncLogger(Logger):
    """gunicorn's logger, in JSON when LOG_FORMAT=json."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        if from_env()["LOG_FORMAT"] == "json":
            from service.observability.logging import json_formatter

            for handler in (*self.error_log.handlers, *self.access_log.handlers):
                handler.setFormatter(json_formatter())


logger_class = LakesyncLogger


def on_starting(server) -> None:
    from service.observability.metrics import prepare_multiprocess_dir

    path = prepare_multiprocess_dir("api", from_env()["DATA_DIR"])
    server.log.info("API metrics kept in %s", path)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
