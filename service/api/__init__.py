"""HTTP API: blueprints, OpenAPI and error handling."""
from __future__ import annotations

import tempfile

from flask import Flask, Request
from flask_smorest import Api

from schemas.common import ErrorResponseSchema
from service.storage import LocalStore


class LakesyncApi(Api):
    """flask-smorest's Api documenting our error envelope for every error response."""

    ERROR_SCHEMA = ErrorResponseSchema


class UploadRequest(Request):
    """Streams uploaded file parts into the store's incoming directory.

    Bodies never sit in memory, and the converter reads them from the same filesystem the
    Parquet file is written to.
    """

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        from flask import current_app

        incoming = LocalStore.from_config(current_app.config).incoming_dir
        return tempfile.NamedTemporaryFile("wb+", dir=incoming, prefix="upload-", suffix=".part")


def register_api(app: Flask) -> Api:
    from service.api.datasets import blp as datasets_blp
    from service.api.datasets import sync_blp
    from service.api.errors import register_error_handlers
    from service.api.health import blp as health_blp
    from service.api.integration import blp as integration_blp
    from service.api.internal import blp as internal_blp

    app.request_class = UploadRequest
    api = LakesyncApi(app, spec_kwargs={"info": {"description": "Uploaded datasets into lakehouse tables."}})
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    for blp in (health_blp, datasets_blp, sync_blp, internal_blp, integration_blp):
        api.register_blueprint(blp)
    register_error_handlers(app, api)
    app.extensions["lakesync_api"] = api
    return api
