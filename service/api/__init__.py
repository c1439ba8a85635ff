"""HTTP API: blueprints, OpenAPI and error handling."""

from __future__ import annotations

import io
import tempfile
from functools import partial
from pathlib import Path

from flask import Flask, Request, Response, request
from flask_smorest import Api
from werkzeug.formparser import FormDataParser, MultiPartParser

from schemas.common import ErrorResponseSchema
from service.api.uploads import BODY_CHUNK
from service.runtime import runtime
from service.storage import UPLOAD_PREFIX, UPLOAD_SUFFIX


class LakesyncApi(Api):
    """flask-smorest's Api documenting our error envelope for every error response."""

    ERROR_SCHEMA = ErrorResponseSchema


# Bytes the multipart parser asks for at a time. Werkzeug's default (64 KiB) makes the
# parse loop, not the network, the bound; larger blocks make its boundary search slower
# again. It must stay below MAX_FORM_MEMORY_SIZE, which also caps the parser's buffer.
UPLOAD_READ_BYTES = 256 * 1024


class UploadFormParser(FormDataParser):
    """Werkzeug's form parser, reading the multipart body in larger blocks."""

    def _parse_multipart(self, stream, mimetype, content_length, options):
        body = stream
        if isinstance(stream, io.RawIOBase):
            stream = io.BufferedReader(stream, buffer_size=BODY_CHUNK)
        parser = MultiPartParser(
            stream_factory=self.stream_factory,
            max_form_memory_size=self.max_form_memory_size,
            max_form_parts=self.max_form_parts,
            cls=self.cls,
            buffer_size=min(UPLOAD_READ_BYTES, self.max_form_memory_size or UPLOAD_READ_BYTES),
        )
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        form, files = parser.parse(stream, boundary, content_length)
        return body, form, files


class UploadRequest(Request):
    """Streams uploaded file parts into the store's incoming directory.

    Bodies never sit in memory, and the converter reads them from the same filesystem the
    Parquet file is written to.
    """

    form_data_parser_class = UploadFormParser

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.spooled: list[str] = []  # the file parts' paths, removed after the response

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        incoming = runtime().store.incoming_dir
        spool = tempfile.NamedTemporaryFile(
            "wb+", dir=incoming, prefix=UPLOAD_PREFIX, suffix=UPLOAD_SUFFIX, delete=False
        )
        self.spooled.append(spool.name)
        return spool

    def remove_spooled_after(self, response: Response) -> Response:
        """Remove the spooled parts once the response has been sent, not before.

        Unlinking a body of hundreds of MB takes tens of milliseconds, which the client
        would otherwise wait for: Flask closes the request before the server sends a byte.
        """
        paths = self._take_spooled()
        if paths:
            response.call_on_close(partial(_remove_files, paths))
        return response

    def close(self) -> None:
        super().close()
        # Not handed to a response (the request failed before one was made): remove now.
        _remove_files(self._take_spooled())

    def _take_spooled(self) -> list[str]:
        """The spooled paths, each handed out once: to the response or to close()."""
        paths, self.spooled = self.spooled, []
        return paths


def _remove_spooled_after(response: Response) -> Response:
    upload_request: UploadRequest = request  # type: ignore[assignment]  # app.request_class
    return upload_request.remove_spooled_after(response)


def _remove_files(paths: list[str]) -> None:
    for path in paths:
        Path(path).unlink(missing_ok=True)


def register_api(app: Flask) -> Api:
    from service.api.datasets import blp as datasets_blp
    from service.api.datasets import sync_blp
    from service.api.errors import register_error_handlers
    from service.api.health import blp as health_blp
    from service.api.integration import blp as integration_blp
    from service.api.internal import blp as internal_blp
    from service.api.usage import blp as usage_blp

    app.request_class = UploadRequest
    app.after_request(_remove_spooled_after)
    api = LakesyncApi(app, spec_kwargs={"info": {"description": "Uploaded datasets into lakehouse tables."}})
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    for blp in (health_blp, datasets_blp, sync_blp, internal_blp, integration_blp, usage_blp):
        api.register_blueprint(blp)
    register_error_handlers(app, api)
    app.extensions["lakesync_api"] = api
    return api
