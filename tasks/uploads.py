"""Upload housekeeping, run by Celery beat."""
from __future__ import annotations

from celery import shared_task
from flask import current_app

from service import datasets, sync
from service.storage import LocalStore


@shared_task(name="uploads.remove_leftovers")
def remove_leftovers() -> dict:
    """Delete the work files of uploads whose API process was killed."""
    config = current_app.config
    store = LocalStore.from_config(config)
    return {"removed": datasets.remove_upload_leftovers(store, sync.duckdb_settings(config).temp_dir)}
