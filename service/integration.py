"""How a tenant's datasets stand against the lakehouse target: counts per status, the
share synced, and whether the target answers now."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

import requests
from sqlalchemy import func, select

from service.datasets import auto_sync, sync_enabled
from service.db import session_scope
from service.lakehouse import PermanentTargetError, TransientTargetError
from service.models import LOCAL_ONLY, SYNC_STATUSES, Dataset
from service.runtime import runtime

log = logging.getLogger(__name__)

# What a target's call may raise when it cannot be reached or refuses.
TARGET_ERRORS = (TransientTargetError, PermanentTargetError, requests.RequestException, OSError)


def integration_status(config: Mapping, tenant_id: uuid.UUID) -> dict:
    """The target, whether it is reachable, the switches, and the tenant's counts per status."""
    with session_scope() as session:
        rows = session.execute(
            select(Dataset.sync_status, func.count())
            .where(Dataset.tenant_id == tenant_id)
            .group_by(Dataset.sync_status)
        ).all()
    counts = {status: 0 for status in SYNC_STATUSES}
    counts.update({status: n for status, n in rows})
    total = sum(counts.values())
    # Local-only datasets were never asked to sync; they do not count against the share.
    asked = total - counts[LOCAL_ONLY]
    body: dict[str, Any] = {
        "sync_enabled": sync_enabled(config),
        "auto_sync": auto_sync(config),
        "datasets_total": total,
        **{status: counts.get(status, 0) for status in SYNC_STATUSES},
        "sync_percentage": round(100.0 * counts["synced"] / asked, 1) if asked else 0.0,
        "reachable": False,
        "error": None,
        "details": {},
    }
    try:
        target = runtime().target()
    except Exception as exc:  # a misconfigured target is a status to show, not a 500
        log.warning("the lakehouse target is not configured: %s", exc)
        body.update(target="unconfigured", error="the lakehouse target is not configured")
        return body
    # Hosts, warehouse ids and server URLs are the operators' business: only the kind shows.
    body["target"] = target.name
    body["details"] = {"target": target.name}
    try:
        target.ping()
        body["reachable"] = True
    except TARGET_ERRORS as exc:
        log.warning("the lakehouse target %s is unreachable: %s", target.name, exc)
        body["error"] = f"the {target.name} target could not be reached"
    return body
