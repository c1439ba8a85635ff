"""The tenant's usage figures."""

from __future__ import annotations

from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint

from schemas.common import ErrorResponseSchema
from schemas.usage import UsageResponseSchema
from service.auth import require_tenant
from service.db import session_scope
from service.usage import tenant_usage

blp = Blueprint("usage", __name__, url_prefix="/api/v1/usage", description="Usage figures of the tenant")


@blp.before_request
def _authenticate():
    require_tenant()


@blp.route("")
class Usage(MethodView):
    @blp.response(200, UsageResponseSchema)
    @blp.alt_response(401, schema=ErrorResponseSchema)
    @blp.doc(security=[{"bearerAuth": []}])
    def get(self):
        """Datasets by sync status, rows and bytes stored, uploads per day over the last 30
        days, and how long runs took to reach synced."""
        with session_scope() as session:
            return tenant_usage(session, g.tenant.id)
