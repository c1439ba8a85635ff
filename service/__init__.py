"""lakesync: uploaded datasets into lakehouse tables."""
from __future__ import annotations

import logging

from flask import Flask

from service import config as config_module


def create_app(config: dict | None = None) -> Flask:
    """Application factory; ``config`` overrides settings read from the environment."""
    app = Flask(__name__)
    app.config.update(config_module.from_env())
    app.config.update(
        API_TITLE="lakesync",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="https://cdn.jsdelivr.net/npm/swagger-ui-dist/",
        # Upload bodies are streamed to disk; these bound what the form parser keeps in memory.
        MAX_FORM_MEMORY_SIZE=1024 * 1024,
        MAX_FORM_PARTS=16,
    )
    if config:
        app.config.update(config)
    app.config.setdefault(
        "CELERY_BEAT_SCHEDULE",
        {
            "relay-unpublished-runs": {"task": "sync.relay", "schedule": float(app.config["SYNC_RELAY_INTERVAL"])},
            "sweep-stuck-runs": {"task": "sync.sweep", "schedule": float(app.config["SYNC_SWEEP_INTERVAL"])},
            "remove-upload-leftovers": {"task": "uploads.remove_leftovers", "schedule": 3600.0},
        },
    )
    app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_UPLOAD_MB"]) * 1024 * 1024
    if not app.config["DATABASE_URL"]:
        raise RuntimeError("DATABASE_URL is not set (run through `make run`, or export it)")
    if not app.config["REDIS_URL"]:
        raise RuntimeError("REDIS_URL is not set (run through `make run`, or export it)")

    logging.basicConfig(level=app.config["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from service.db import init_engine

    init_engine(app.config["DATABASE_URL"])

    from service.storage import LocalStore

    LocalStore.from_config(app.config).ensure()

    from tasks.celery_app import celery_init_app

    celery_init_app(app)

    from service.api import register_api

    register_api(app)

    from service.cli import register_cli

    register_cli(app)
    return app
