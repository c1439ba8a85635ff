"""Liveness and readiness."""

from __future__ import annotations

import redis
from flask import current_app
from flask_smorest import Blueprint
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from schemas.health import HealthResponseSchema, ReadyResponseSchema
from service.db import get_engine

blp = Blueprint("health", __name__, description="Liveness and readiness probes")


@blp.route("/healthz")
@blp.response(200, HealthResponseSchema)
def healthz():
    """The process is alive."""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.response(200, ReadyResponseSchema)
@blp.alt_response(503, schema=ReadyResponseSchema)
def readyz():
    """PostgreSQL and Redis are reachable."""
    checks = {}
    try:
        with get_engine().connect() as conn:
            conn.execute(text("select 1"))
        checks["postgres"] = "ok"
    except SQLAlchemyError as exc:
        checks["postgres"] = f"unavailable: {exc.__class__.__name__}"
    try:
        client = redis.Redis.from_url(current_app.config["REDIS_URL"], socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        client.close()
        checks["redis"] = "ok"
    except redis.RedisError as exc:
        checks["redis"] = f"unavailable: {exc.__class__.__name__}"
    ready = all(v == "ok" for v in checks.values())
    return {"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503
