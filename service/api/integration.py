"""The lakehouse target as a tenant sees it: catalog set-up and integration status."""

from __future__ import annotations

import logging

from flask import current_app, g
from flask.views import MethodView
from flask_smorest import Blueprint

from schemas.common import ErrorResponseSchema
from schemas.integration import CatalogInitializeResponseSchema, IntegrationStatusResponseSchema
from service.auth import require_tenant
from service.errors import APIError
from service.integration import TARGET_ERRORS, integration_status
from service.lakehouse import PermanentTargetError
from service.runtime import runtime

log = logging.getLogger(__name__)

blp = Blueprint("integration", __name__, url_prefix="/api/v1", description="Lakehouse target set-up and status")


@blp.before_request
def _authenticate():
    require_tenant()


def _target_error(exc: Exception, name: str, action: str) -> APIError:
    """503 when the target cannot be reached (may pass), 502 when it refused."""
    if isinstance(exc, PermanentTargetError):
        return APIError(
            f"the {name} target refused {action}: {exc}", code="target_error", status=502, details={"target": name}
        )
    return APIError(
        f"the {name} target is unavailable for {action}: {exc}",
        code="target_unavailable",
        status=503,
        details={"target": name},
    )


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
            raise _target_error(exc, name, f"initializing catalog {catalog}") from exc
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
        return integration_status(current_app.config, g.tenant.id)
