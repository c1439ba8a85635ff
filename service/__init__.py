"""lakesync: uploaded datasets into lakehouse tables.

``create_app(config)`` builds the Flask app and, beside it, ``celery_init_app(app)`` its
Celery app (``app.extensions["celery"]``); the worker entry is ``tasks/celery_app.py``.
"""

from __future__ import annotations

from celery import Celery, Task
from celery.signals import worker_process_init
from flask import Flask

from celery_config import celery_settings
from service import config as config_module

API_SETTINGS = {
    "API_TITLE": "lakesync",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.1.0",
    "OPENAPI_URL_PREFIX": "/api",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "/docs",
    "OPENAPI_SWAGGER_UI_URL": "https://cdn.jsdelivr.net/npm/swagger-ui-dist/",
    # Upload bodies are streamed to disk; these bound what the form parser keeps in memory.
    "MAX_FORM_MEMORY_SIZE": 1024 * 1024,
    "MAX_FORM_PARTS": 16,
}


def create_app(config: dict | None = None) -> Flask:
    """Build the app once. Settings come from the environment; ``config`` overrides them,
    and the Celery settings are derived from the result (``CELERY`` in ``config`` is
    merged over them)."""
    app = Flask(__name__)
    app.config.from_mapping(config_module.from_env())
    app.config.from_mapping(API_SETTINGS)
    overrides = dict(config or {})
    celery_overrides = overrides.pop("CELERY", {})
    app.config.from_mapping(overrides)
    for required in ("DATABASE_URL", "REDIS_URL"):
        if not app.config[required]:
            raise RuntimeError(f"{required} is not set (run through `make run`, or export it)")
    app.config["CELERY"] = {**celery_settings(app.config), **celery_overrides}
    app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_UPLOAD_MB"]) * 1024 * 1024

    from service.observability import init_observability

    init_observability(app)

    from service import duckdb_shared
    from service.db import init_engine
    from service.runtime import Runtime

    duckdb_shared.restrict_to(config_module.data_directories(app.config))

    init_engine(app.config["DATABASE_URL"])
    runtime = Runtime(app.config)
    runtime.store.ensure()
    app.extensions["lakesync"] = runtime
    celery_init_app(app)

    from service.api import register_api
    from service.cli import register_cli
    from service.web import register_web

    register_api(app)
    register_web(app)
    register_cli(app)
    return app


def celery_init_app(app: Flask) -> Celery:
    """The app's Celery app: tasks run inside the Flask app context."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


@worker_process_init.connect
def _dispose_engine_after_fork(**_kwargs) -> None:
    # Connections inherited from the parent must never be shared with a child process.
    from service.db import dispose_engine

    dispose_engine()
