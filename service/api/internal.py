"""Endpoints for trusted services (e.g. a Databricks-side loader fetching Parquet files)."""
from __future__ import annotations

import hmac

from flask import current_app, send_file
from flask_smorest import Blueprint
from sqlalchemy import select

from service.auth import bearer_token
from service.db import session_scope
from service.errors import APIError, NotFound, Unauthorized
from service.models import Dataset
from service.runtime import runtime

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
    try:
        path = store.path_for(file_name)
    except ValueError:
        raise APIError("not a stored dataset file name; expected <uuid>.parquet", code="invalid_file_name")
    with session_scope() as session:
        known = session.scalar(select(Dataset.id).where(Dataset.file_name == file_name))
    if known is None or not path.is_file():
        raise NotFound(f"no stored file {file_name}")
    return send_file(path, mimetype="application/vnd.apache.parquet", as_attachment=True, download_name=file_name, conditional=True)
