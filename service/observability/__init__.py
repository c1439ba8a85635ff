"""Operating lakesync: structured logs with one request id from the upload through every
task, and Prometheus metrics of the API and the worker."""

from __future__ import annotations

from flask import Flask, Response


def init_observability(app: Flask) -> None:
    """Logging in the configured format, request ids, ``GET /metrics`` and the Celery hooks."""
    from service.observability import celery_signals, metrics, request_id
    from service.observability.logging import configure_logging

    try:
        configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None
    request_id.init_app(app)

    def metrics_view() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)

    # A plain route, outside the OpenAPI spec: it is for the scraper, not for tenants.
    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])
    celery_signals.install(app)
