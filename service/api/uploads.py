"""What kind of upload a request body is, and streaming a body to the store's incoming directory.

A raw-body upload is the file itself as the request body (``curl --data-binary @f.csv``),
named by its ``Content-Type``; the options a multipart upload gives as form fields
(``name``, ``description``, ``sync``, ``sheet``, ``records_path``, ``bad_rows``,
``schema_hints``) come in the query string. ``application/json`` is both a JSON file and the
records body ``{"name", "records"}``: it is a file when the query string carries one of those
parameters or the request has a ``Content-Disposition`` header, else it is a records body.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import cast

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header

from schemas.datasets import DatasetRawUploadQuerySchema
from service.errors import IngestError
from service.storage import UPLOAD_PREFIX, UPLOAD_SUFFIX

MB = 1024 * 1024
# Bytes read from the server's body stream at a time. gunicorn receives at most 1 MiB per
# recv() and hands a read of that size on as it came; a larger read is gathered in a growing
# buffer and copied again, a smaller one costs more calls (bench/README.md).
BODY_CHUNK = 1 * MB

JSON = "application/json"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Content types of a raw-body upload -> the extension that tells the converter the format.
RAW_TYPES: dict[str, str] = {
    "text/csv": ".csv",
    "text/tab-separated-values": ".tsv",
    "application/x-ndjson": ".ndjson",
    JSON: ".json",
    "application/vnd.apache.parquet": ".parquet",
    "application/x-parquet": ".parquet",
    XLSX: ".xlsx",
}
# Query parameters of a raw-body upload; one of them makes an application/json body a file.
RAW_PARAMETERS = tuple(DatasetRawUploadQuerySchema().fields)


def raw_extension(request: Request) -> str | None:
    """The extension of a raw-body upload's format, or None when the body is not one."""
    extension = RAW_TYPES.get(request.mimetype)
    if extension is None:
        return None
    if request.mimetype == JSON and not (
        any(p in request.args for p in RAW_PARAMETERS) or "Content-Disposition" in request.headers
    ):
        return None
    return extension


def disposition_file_name(request: Request) -> str | None:
    """The client's file name from ``Content-Disposition: attachment; filename=...``."""
    header = request.headers.get("Content-Disposition")
    if not header:
        return None
    return parse_options_header(header)[1].get("filename") or None


def spool_body(request: Request, incoming_dir: Path, limit: int, *, empty: IngestError) -> Path:
    """Stream the request body to a new file under ``incoming_dir``, at most ``limit`` bytes
    (413 past it, chunked bodies included). The file is removed once the response is sent,
    or when the request fails."""
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()
    request.max_content_length = limit
    # With a limit set, werkzeug always wraps the server's stream in its LimitedStream.
    stream = cast(io.RawIOBase, request.stream)
    # One buffer filled again and again: read(n) would allocate (and zero) a new block and
    # copy it once more for every chunk.
    buffer = bytearray(BODY_CHUNK)
    view = memoryview(buffer)
    with tempfile.NamedTemporaryFile(
        "wb", buffering=0, dir=incoming_dir, prefix=UPLOAD_PREFIX, suffix=UPLOAD_SUFFIX, delete=False
    ) as spool:
        request.spooled.append(spool.name)  # type: ignore[attr-defined]
        size = 0
        while count := stream.readinto(buffer):
            size += count
            if size > limit:
                raise RequestEntityTooLarge()
            spool.write(view[:count])
    if size == 0:
        raise empty
    return Path(spool.name)
