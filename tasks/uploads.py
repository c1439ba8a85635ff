"""Upload housekeeping, run by Celery beat."""

from __future__ import annotations

from celery import shared_task

from service import datasets
from service.runtime import runtime


@shared_task(name="uploads.remove_leftovers")
def remove_leftovers() -> dict:
    """Delete the work files of uploads whose API process was killed."""
    rt = runtime()
    return {"removed": datasets.remove_upload_leftovers(rt.store, rt.ingest_settings.temp_dir)}
