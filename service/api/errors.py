"""Every error answers ``{"error": {"code", "message", "details"}}`` with the right status."""

from __future__ import annotations

import logging
import re

import sqlalchemy.exc
from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from service.api.uploads import raw_extension
from service.errors import APIError
from service.lakehouse.base import PermanentTargetError, TransientTargetError

log = logging.getLogger(__name__)


def _code(exc: HTTPException) -> str:
    return re.sub(r"[^a-z0-9]+", "_", (exc.name or "error").lower()).strip("_")


def error_response(status: int, code: str, message: str, details=None):
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    return response


def _too_large():
    config = current_app.config
    if request.mimetype == "application/json" and raw_extension(request) is None:
        limit = min(config["MAX_JSON_BODY_MB"], config["MAX_UPLOAD_MB"])
        return error_response(
            413,
            "payload_too_large",
            f"the JSON body exceeds the limit of {limit} MB (the smaller of MAX_JSON_BODY_MB and MAX_UPLOAD_MB)",
            {"limit_mb": limit},
        )
    if raw_extension(request) is not None:
        limit = config["MAX_UPLOAD_MB"]
        return error_response(
            413, "payload_too_large", f"the upload exceeds the limit of {limit} MB (MAX_UPLOAD_MB)", {"limit_mb": limit}
        )
    limits = {
        "limit_mb": config["MAX_UPLOAD_MB"],
        "max_form_parts": config["MAX_FORM_PARTS"],
        "max_form_field_bytes": config["MAX_FORM_MEMORY_SIZE"],
    }
    return error_response(
        413,
        "payload_too_large",
        f"the upload exceeds a limit: a body over {limits['limit_mb']} MB (MAX_UPLOAD_MB), more than "
        f"{limits['max_form_parts']} form parts, or a form field over {limits['max_form_field_bytes']} bytes",
        limits,
    )


def http_error(exc: HTTPException):
    if isinstance(exc, RequestEntityTooLarge):
        return _too_large()
    details = {}
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages")
    if messages:
        # webargs validation errors, keyed by location then field.
        details = messages
        message = "invalid request: " + "; ".join(
            f"{field}: {' '.join(map(str, errs)) if isinstance(errs, list) else errs}"
            for fields in messages.values()
            for field, errs in (fields.items() if isinstance(fields, dict) else [("body", fields)])
        )
    else:
        message = exc.description or exc.name
    response = error_response(exc.code or 500, _code(exc), message, details)
    for header, value in getattr(exc, "get_headers", lambda: [])() or []:
        if header.lower() not in ("content-type", "content-length"):
            response.headers[header] = value
    return response


def register_error_handlers(app: Flask, api) -> None:
    @app.errorhandler(APIError)
    def _api_error(exc: APIError):
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        return http_error(exc)

    @app.errorhandler(TransientTargetError)
    def _target_down(exc):
        log.warning("lakehouse target unavailable: %s", exc)
        return error_response(503, "target_unavailable", f"the lakehouse target is unavailable: {exc}")

    @app.errorhandler(PermanentTargetError)
    def _target_refused(exc):
        log.warning("lakehouse target refused the request: %s", exc)
        return error_response(502, "target_error", f"the lakehouse target refused the request: {exc}")

    @app.errorhandler(sqlalchemy.exc.OperationalError)
    def _db_down(exc):
        log.error("database unavailable: %s", exc)
        return error_response(503, "database_unavailable", "PostgreSQL is unavailable; try again shortly")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if isinstance(exc, HTTPException):
            return http_error(exc)
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
