"""The lakehouse target as a tenant sees it: catalog set-up and integration status."""
from __future__ import annotations

import logging

import requests
from flask import current_app, g
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import func, select

from schemas.common import ErrorResponseSchema
from schemas.integration import CatalogInitializeResponseSchema, IntegrationStatusResponseSchema
from service.auth import require_tenant
from service.datasets import auto_sync, sync_enabled
from service.db import session_scope
from service.errors import APIError
from service.lakehouse import PermanentTargetError, TransientTargetError
from service.models import LOCAL_ONLY, SYNC_STATUSES, Dataset
from service.runtime import runtime

log = logging.getLogger(__name__)

blp = Blueprint("integration", __name__, url_prefix="/api/v1", description="Lakehouse target set-up and status")


@blp.before_request
def _authenticate():
    require_tenant()


def _target_error(exc: Exception, name: str, action: str) -> APIError:
    """503 when the target cannot be reached (may pass), 502 when it refused."""
    if isinstance(exc, PermanentTargetError):
        return APIError(f"the {name} target refused {action}: {exc}", code="target_error", status=502,
                        details={"target": name})
    return APIError(f"the {name} target is unavailable for {action}: {exc}", code="target_unavailable", status=503,
                    details={"target": name})


TARGET_ERRORS = (TransientTargetError, PermanentTargetError, requests.RequestException, OSError)


@blp.route("/catalog/initialize")
class CatalogInitialize(MethodView):
    @blp.response(200, CatalogInitializeResponseSchema)
    @blp.alt_response(401, schema=ErrorResponseSchema)
    @blp.alt_response(502, schema=ErrorResponseSchema)
    @blp.alt_response(503, schema=ErrorResponseSchema)
    @blp.doc(security=[{"bearerAuth": []}])
    def post(self):
        """Create the tenant's catalog, its bronze and silver schemas (and the target's staging
        area) if missing; idempotent."""
        catalog = g.tenant.catalog
        name = current_app.config.get("SYNC_TARGET", "lakehouse")
        try:
            target = runtime().target()
            name = target.name
            result = dict(target.initialize_catalog(catalog))
        except TARGET_ERRORS as exc:
            log.warning("initializing catalog %s failed: %s", catalog, exc)
            raise _target_error(exc, name, f"initializing catalog {catalog}")
        known = {"catalog", "schemas", "volumes"}
        return {
            "target": target.name,
            "catalog": result.get("catalog", catalog),
            "schemas": list(result.get("schemas", [])),
            "volumes": list(result.get("volumes", [])),
            "details": {k: v for k, v in result.items() if k not in known},
        }


@blp.route("/integration/status")
class IntegrationStatus(MethodView):
    @blp.response(200, IntegrationStatusResponseSchema)
    @blp.alt_response(401, schema=ErrorResponseSchema)
    @blp.doc(security=[{"bearerAuth": []}])
    def get(self):
        """Which target the datasets sync to, whether it answers now, and how the tenant's
        datasets stand."""
        with session_scope() as session:
            rows = session.execute(
                select(Dataset.sync_status, func.count()).where(Dataset.tenant_id == g.tenant.id)
                .group_by(Dataset.sync_status)
            ).all()
        counts = {status: 0 for status in SYNC_STATUSES}
        counts.update({status: n for status, n in rows})
        total = sum(counts.values())
        # Local-only datasets were never asked to sync; they do not count against the share.
        asked = total - counts[LOCAL_ONLY]
        body = {
            "sync_enabled": sync_enabled(current_app.config),
            "auto_sync": auto_sync(current_app.config),
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
