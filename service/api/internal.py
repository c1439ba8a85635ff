"""Endpoints for trusted services (e.g. a Databricks-side loader fetching Parquet files)."""
from __future__ import annotations

import hmac

from flask import Response, current_app
from flask_smorest import Blueprint
from sqlalchemy import select

from service.auth import bearer_token
from service.db import session_scope
from service.errors import APIError, NotFound, Unauthorized
from service.models import Dataset
from service.runtime import runtime
from service.storage import StoredFileMissing

blp = Blueprint("internal", __name__, url_prefix="/internal", description="Trusted service-to-service endpoints")


@blp.route("/storage/datasets/<string:file_name>")
@blp.doc(security=[{"bearerAuth": []}], responses={"200": {"description": "The Parquet file", "content": {"application/vnd.apache.parquet": {}}}})
def download(file_name: str):
    """Stream a stored dataset Parquet file (INTERNAL_API_KEY bearer)."""
    expected = current_app.config.get("INTERNAL_API_KEY") or ""
    given = bearer_token() or ""
    # compare_digest runs in time independent of where the strings differ.
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("missing or invalid internal API key")
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
    return Response(chunks, mimetype="application/vnd.apache.parquet", direct_passthrough=True,
                    headers={"Content-Length": str(size), "Content-Disposition": f"attachment; filename={file_name}"})
