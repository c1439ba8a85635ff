"""What a log line is about: the request id and the ids of the work in progress.

One context variable holds them, so they follow a request through its thread and a task
through its worker process without being passed around; every log record gets them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# The fields a log line may carry from its context, in the order they are shown.
FIELDS = ("request_id", "tenant", "dataset_id", "run_id", "task_id", "step")

# A client's X-Request-ID is kept only when it is this tame: it ends up in logs and headers.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")

# Never modified in place (a new dict is set each time), so a shared empty default is safe.
_EMPTY: dict[str, Any] = {}
_context: ContextVar[dict[str, Any]] = ContextVar("lakesync_log_context", default=_EMPTY)  # noqa: B039


def new_request_id() -> str:
    return uuid.uuid4().hex


def valid_request_id(value: str | None) -> bool:
    return value is not None and REQUEST_ID_PATTERN.fullmatch(value) is not None


def current() -> dict[str, Any]:
    """The fields of the current context (do not modify)."""
    return _context.get()


def request_id() -> str | None:
    return _context.get().get("request_id")


def snapshot() -> dict[str, Any]:
    """The current fields, with the tenant of the HTTP request being served, once known."""
    fields = _context.get()
    if "tenant" not in fields:
        tenant = _request_tenant()
        if tenant is not None:
            fields = {**fields, "tenant": tenant}
    return fields


def _request_tenant() -> str | None:
    # The API authenticates in each blueprint's before_request, after the context is set.
    from flask import g, has_app_context

    if not has_app_context():
        return None
    tenant = g.get("tenant")
    return getattr(tenant, "name", None)


def replace(**fields: Any) -> None:
    """Start a fresh context (a new request or task): nothing of the previous one stays."""
    _context.set({k: str(v) for k, v in fields.items() if v is not None})


def clear() -> None:
    _context.set({})


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add fields to the context for the length of a block."""
    token = _context.set({**_context.get(), **{k: str(v) for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)
