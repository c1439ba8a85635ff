"""Prometheus metrics of the API and the worker.

Both run several processes (gunicorn workers, Celery prefork children), so each serving
process tree keeps its samples in files (prometheus_client's multiprocess mode) under its
own directory of ``PROMETHEUS_MULTIPROC_DIR`` (default ``$DATA_DIR/prometheus``): ``api``
for gunicorn, ``worker-<node name>`` for a Celery worker. The directory is emptied when
its tree starts. A process started without one (``flask run``, tests) keeps its samples
in memory. Metrics are built on first use, after the directory is chosen.
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


def prepare_multiprocess_dir(role: str, data_dir: str | os.PathLike) -> Path:
    """Empty and use ``<PROMETHEUS_MULTIPROC_DIR or DATA_DIR/prometheus>/<role>`` for this
    process and the children it forks; call it in the parent, before any child starts."""
    base = Path(os.environ.get(MULTIPROC_ENV) or Path(data_dir) / "prometheus")
    path = base / re.sub(r"[^A-Za-z0-9._-]+", "_", role)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)
    # prometheus_client picks its value store when it is first imported, which may have
    # happened already (Celery's command line loads Flower, which imports it): pick again.
    values.ValueClass = values.get_value_class()
    return path


class FilesCollector(MultiProcessCollector):
    """Every process's samples, leaving out a file a process is creating this instant: it
    is empty until sized, and reading it would fail the whole scrape."""

    def collect(self):
        files = [f for f in glob.glob(os.path.join(self._path, "*.db")) if _has_data(f)]
        return self.merge(files, accumulate=True)


def _has_data(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except OSError:  # removed meanwhile (a dead process's live gauges)
        return False


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def registry() -> CollectorRegistry:
    """What this process exposes: every process's samples of its tree, or its own."""
    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    merged = CollectorRegistry()
    FilesCollector(merged, path=path)
    return merged


def exposition() -> tuple[bytes, str]:
    return generate_latest(registry()), CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class ApiMetrics:
    request_duration: Histogram
    uploads: Counter
    upload_bytes: Counter
    upload_rows: Counter


@dataclass(frozen=True)
class WorkerMetrics:
    step_duration: Histogram
    rows_written: Counter
    runs: Counter
    step_retries: Counter
    step_failures: Counter


@functools.cache
def api() -> ApiMetrics:
    return ApiMetrics(
        request_duration=Histogram(
            "lakesync_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["route", "method", "status"],
            buckets=HTTP_BUCKETS,
        ),
        uploads=Counter(
            "lakesync_uploads_total",
            "Uploads by source format and outcome (created or the error code)",
            ["format", "outcome"],
        ),
        upload_bytes=Counter("lakesync_upload_bytes_total", "Request body bytes of accepted uploads", ["format"]),
        upload_rows=Counter("lakesync_upload_rows_total", "Rows of accepted uploads", ["format"]),
    )


@functools.cache
def worker() -> WorkerMetrics:
    return WorkerMetrics(
        step_duration=Histogram(
            "lakesync_sync_step_duration_seconds",
            "Time a sync step took to succeed (one attempt)",
            ["step", "target"],
            buckets=STEP_BUCKETS,
        ),
        rows_written=Counter(
            "lakesync_sync_rows_written_total", "Rows written to lakehouse tables", ["step", "target"]
        ),
        runs=Counter("lakesync_sync_runs_total", "Sync runs that ended, by final status", ["status"]),
        step_retries=Counter(
            "lakesync_sync_step_retries_total", "Step attempts that failed and will be retried", ["step", "error"]
        ),
        step_failures=Counter("lakesync_sync_step_failures_total", "Steps that failed for good", ["step", "error"]),
    )


def start_worker_server(port: int, addr: str, *collectors) -> bool:
    """Serve the worker tree's metrics, and what ``collectors`` read at each scrape, over HTTP
    from a thread of this process; False (logged) when the port cannot be had."""
    exposed = CollectorRegistry()
    path = multiprocess_dir()
    if path is not None:
        FilesCollector(exposed, path=path)
    for collector in collectors:
        exposed.register(collector)
    try:
        start_http_server(port, addr=addr, registry=exposed)
    except OSError as exc:
        log.warning("worker metrics are not served: cannot listen on %s:%d: %s", addr, port, exc)
        return False
    log.info("worker metrics served on http://%s:%d/metrics", addr, port)
    return True
