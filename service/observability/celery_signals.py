"""The request id and log context through Celery, and the worker's step metrics.

The id of the request that started a sync run goes into each task message's headers
(``before_task_publish``); a task restores it, with its own ids, into the log context
before it runs (``task_prerun``). The chain's later steps are published by the worker
from inside the earlier step, so they carry the same id. A task that arrives without one
(sent by beat, or by an older sender) gets a new id.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from celery import signals
from flask import Flask

from service.observability import context, metrics

log = logging.getLogger("lakesync.tasks")

REQUEST_ID_HEADER = "lakesync_request_id"
TENANT_HEADER = "lakesync_tenant"
STEP_TASKS = {"sync.bronze": "bronze", "sync.silver": "silver", "sync.metadata": "metadata"}
# Steps whose result counts rows written to a table (metadata only reads them back).
WRITING_STEPS = ("bronze", "silver")


@dataclass
class _State:
    app: Flask | None = None
    started: dict[str, float] = field(default_factory=dict)  # task id -> perf_counter at its start


_state = _State()


def _target_name(app: Flask) -> str:
    built = app.extensions.get("lakehouse_target")
    if built is not None:
        return built.name
    from service.lakehouse.registry import target_class

    try:
        return target_class(app.config["SYNC_TARGET"]).name
    except Exception:
        return "unknown"


def _add_headers(headers: dict | None = None, **_kwargs) -> None:
    if headers is None:
        return
    fields = context.snapshot()
    for header, name in ((REQUEST_ID_HEADER, "request_id"), (TENANT_HEADER, "tenant")):
        if fields.get(name):
            headers.setdefault(header, fields[name])


def _task_started(task_id=None, task=None, args=None, **_kwargs) -> None:
    request = task.request
    request_id = getattr(request, REQUEST_ID_HEADER, None)
    if not context.valid_request_id(request_id):
        request_id = context.new_request_id()
    fields = {"request_id": request_id, "tenant": getattr(request, TENANT_HEADER, None), "task_id": task_id}
    step = STEP_TASKS.get(task.name)
    if step is not None and args and len(args) >= 2:
        fields.update(step=step, dataset_id=args[0], run_id=args[1])
    context.replace(**fields)
    _state.started[task_id] = time.perf_counter()


def _task_finished(task_id=None, task=None, retval=None, state=None, **_kwargs) -> None:
    started = _state.started.pop(task_id, None)
    step = STEP_TASKS.get(task.name)
    try:
        done = state == "SUCCESS" and isinstance(retval, dict) and not retval.get("skipped")
        if step is None or started is None or not done or _state.app is None:
            return
        elapsed = time.perf_counter() - started
        target = _target_name(_state.app)
        worker = metrics.worker()
        worker.step_duration.labels(step, target).observe(elapsed)
        rows = retval.get("rows")
        if step in WRITING_STEPS and isinstance(rows, int):
            worker.rows_written.labels(step, target).inc(rows)
        extra = {"duration_ms": round(elapsed * 1000, 1)}
        if isinstance(rows, int):
            extra["rows"] = rows
        log.info("%s step succeeded", step, extra=extra)
    finally:
        context.clear()


def _error_class(exc: BaseException | None) -> str:
    return type(exc).__name__ if exc is not None else "unknown"


def _task_retried(sender=None, reason=None, **_kwargs) -> None:
    step = STEP_TASKS.get(getattr(sender, "name", ""))
    if step is None:
        return
    error = _error_class(getattr(reason, "exc", None) or reason)
    metrics.worker().step_retries.labels(step, error).inc()
    log.warning("%s step will be retried", step, extra={"error_code": error})


def _task_failed(sender=None, exception=None, **_kwargs) -> None:
    step = STEP_TASKS.get(getattr(sender, "name", ""))
    if step is None:
        return
    error = _error_class(exception)
    metrics.worker().step_failures.labels(step, error).inc()
    log.error("%s step failed for good", step, extra={"error_code": error})


def _keep_our_logging(loglevel=None, **_kwargs) -> None:
    # Answering this signal stops Celery from configuring logging (and from redirecting
    # stdout into it): the app's handler is already there.
    if loglevel:
        logging.getLogger().setLevel(loglevel)


def _worker_init(sender=None, instance=None, **_kwargs) -> None:
    """In the worker's main process, before its pool forks: choose the metrics directory."""
    app = _state.app
    if app is None:
        return
    metrics.prepare_multiprocess_dir(f"worker-{sender}", app.config["DATA_DIR"])
    if app.config["LOG_FORMAT"] == "json" and instance is not None:
        instance.quiet = True  # no start-up banner: every line of the output is JSON


def _worker_ready(**_kwargs) -> None:
    """Serve the metrics from the worker's main process, once its pool is up."""
    app = _state.app
    if app is None or not app.config.get("WORKER_METRICS_PORT"):
        return
    from service.observability.worker_state import WorkerStateCollector

    collector = WorkerStateCollector(app.extensions["celery"], float(app.config["SYNC_STUCK_TIMEOUT"]))
    metrics.start_worker_server(int(app.config["WORKER_METRICS_PORT"]), app.config["WORKER_METRICS_ADDR"], collector)


def install(app: Flask) -> None:
    """Connect the receivers (once per process; the latest app is the one they serve)."""
    _state.app = app
    for signal, receiver in (
        (signals.before_task_publish, _add_headers),
        (signals.task_prerun, _task_started),
        (signals.task_postrun, _task_finished),
        (signals.task_retry, _task_retried),
        (signals.task_failure, _task_failed),
        (signals.setup_logging, _keep_our_logging),
        (signals.celeryd_init, _worker_init),
        (signals.worker_ready, _worker_ready),
    ):
        signal.connect(receiver, weak=False, dispatch_uid=f"lakesync.observability.{receiver.__name__}")
