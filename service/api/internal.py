"""Endpoints for trusted services (e.g. a Databricks-side loader fetching Parquet files)."""

from __future__ import annotations

import hmac

from flask import Response, current_app, request
from flask_smorest import Blueprint
from sqlalchemy import select

from service.auth import bearer_token
from service.db import session_scope
from service.errors import APIError, NotFound, Unauthorized
from service.models import Dataset
from service.runtime import runtime
from service.signing import verify
from service.storage import StoredFileMissing

blp = Blueprint("internal", __name__, url_prefix="/internal", description="Trusted service-to-service endpoints")


@blp.route("/storage/datasets/<string:file_name>")
@blp.doc(
    security=[{"bearerAuth": []}, {}],
    parameters=[
        {
            "name": "expires",
            "in": "query",
            "schema": {"type": "integer"},
            "description": "expiry (Unix seconds) of a signed URL",
        },
        {
            "name": "signature",
            "in": "query",
            "schema": {"type": "string"},
            "description": "HMAC-SHA256 of the file name and the expiry (see service/signing.py)",
        },
    ],
    responses={"200": {"description": "The Parquet file", "content": {"application/vnd.apache.parquet": {}}}},
)
def download(file_name: str):
    """Stream a stored dataset Parquet file.

    Opened by a signed URL (``expires`` and ``signature``, valid for one file until it
    expires), or by the INTERNAL_API_KEY bearer unless INTERNAL_ACCEPT_BEARER is false.
    """
    if not _authorized(current_app.config, file_name):
        raise Unauthorized("missing, expired or invalid signature or internal API key")
    store = runtime().store
    if not store.is_stored_name(file_name):
        raise APIError("not a stored dataset file name; expected <uuid>.parquet", code="invalid_file_name")
    with session_scope() as session:
        known = session.scalar(select(Dataset.id).where(Dataset.file_name == file_name))
    if known is None:
        raise NotFound(f"no stored file {file_name}")
    try:
        # Streamed from wherever it is stored, a chunk at a time: memory stays flat.
        size, chunks = store.iter_bytes(file_name)
    except StoredFileMissing:
        raise NotFound(f"no stored file {file_name}") from None
    return Response(
        chunks,
        mimetype="application/vnd.apache.parquet",
        direct_passthrough=True,
        headers={"Content-Length": str(size), "Content-Disposition": f"attachment; filename={file_name}"},
    )


def _authorized(config, file_name: str) -> bool:
    if "signature" in request.args:
        return verify(config, file_name, request.args.get("expires"), request.args.get("signature"))
    if not config.get("INTERNAL_ACCEPT_BEARER", True):
        return False
    expected = config.get("INTERNAL_API_KEY") or ""
    given = bearer_token() or ""
    # compare_digest runs in time independent of where the strings differ.
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())
