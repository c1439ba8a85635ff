"""The one Celery app. Tasks run inside the Flask app context.

Start a worker with ``celery -A tasks.celery_app worker``.
"""
from __future__ import annotations

from celery import Celery, Task
from celery.signals import worker_process_init
from flask import Flask


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.config_from_object("celery_config")
    celery.conf.broker_url = app.config["REDIS_URL"]
    celery.conf.beat_schedule = app.config.get("CELERY_BEAT_SCHEDULE", {})
    celery.set_default()
    app.extensions["celery"] = celery
    return celery


@worker_process_init.connect
def _dispose_engine_after_fork(**_kwargs) -> None:
    # Connections inherited from the parent must never be shared with a child process.
    from service.db import dispose_engine

    dispose_engine()


def _make_app() -> Celery:
    from service import create_app

    flask_app = create_app()
    return flask_app.extensions["celery"]


app = _make_app()
# Register the task modules with this app.
import tasks.sync  # noqa: E402,F401
import tasks.uploads  # noqa: E402,F401
