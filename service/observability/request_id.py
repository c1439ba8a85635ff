"""Each HTTP request's id, its log line and its metrics.

A client's ``X-Request-ID`` is kept when it is up to 128 characters of
``[A-Za-z0-9._-]``; otherwise (absent or malformed) a new id is made. The response echoes
it, every log line of the request carries it, and so do the sync runs the request starts.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from service.observability import context, metrics

log = logging.getLogger("lakesync.http")

HEADER = "X-Request-ID"
UPLOAD_ENDPOINT = ("datasets.Datasets", "POST")
# Probes and scrapes come every few seconds; their lines are kept out of INFO.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def _begin() -> None:
    incoming = request.headers.get(HEADER)
    g.request_id = incoming if context.valid_request_id(incoming) else context.new_request_id()
    g.request_started = time.perf_counter()
    context.replace(request_id=g.request_id)


def _error_code(response: Response) -> str | None:
    if response.status_code < 400 or response.is_streamed or not response.is_json:
        return None
    body = response.get_json(silent=True)
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def _count_upload(response: Response, error_code: str | None) -> None:
    api = metrics.api()
    if response.status_code == 201:
        body = response.get_json(silent=True) or {}
        fmt = str(body.get("source_format") or "unknown")
        api.uploads.labels(fmt, "created").inc()
        # The body as sent; a chunked body (no Content-Length) is not counted.
        api.upload_bytes.labels(fmt).inc(request.content_length or 0)
        api.upload_rows.labels(fmt).inc(int(body.get("row_count") or 0))
        return
    fmt = "json" if request.mimetype == "application/json" else "unknown"
    api.uploads.labels(fmt, error_code or f"http_{response.status_code}").inc()


def _finish(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id is None:  # a hook before ours failed; answer with an id all the same
        request_id = g.request_id = context.new_request_id()
    response.headers[HEADER] = request_id
    started = g.get("request_started")
    elapsed = time.perf_counter() - started if started is not None else 0.0
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    error_code = _error_code(response)
    if route != "/metrics":
        metrics.api().request_duration.labels(route, request.method, str(response.status_code)).observe(elapsed)
    if (request.endpoint, request.method) == UPLOAD_ENDPOINT:
        _count_upload(response, error_code)
    extra = {
        "duration_ms": round(elapsed * 1000, 1),
        "method": request.method,
        "route": route,
        "status": response.status_code,
    }
    if error_code:
        extra["error_code"] = error_code
    level = logging.DEBUG if route in QUIET_ROUTES else logging.INFO
    log.log(level, "%s %s %d", request.method, request.path, response.status_code, extra=extra)
    return response


def _end(_exc: BaseException | None) -> None:
    context.clear()


def init_app(app: Flask) -> None:
    app.before_request(_begin)
    app.after_request(_finish)
    app.teardown_request(_end)
