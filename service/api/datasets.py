"""Datasets: upload, list, get, sync status, row preview."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from pathlib import Path

from flask import current_app, g, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import ValidationError

from schemas.common import ErrorResponseSchema, storable_text
from schemas.datasets import (
    BadRowsQuerySchema,
    BadRowsResponseSchema,
    DatasetListQuerySchema,
    DatasetListResponseSchema,
    DatasetRawUploadQuerySchema,
    DatasetRecordsRequestSchema,
    DatasetResponseSchema,
    DatasetUploadRequestSchema,
    RowsQuerySchema,
    RowsResponseSchema,
)
from schemas.sync import BulkResyncRequestSchema, BulkResyncResponseSchema, SyncStatusResponseSchema
from service import datasets as service
from service.api.uploads import MB, RAW_TYPES, disposition_file_name, raw_extension, spool_body
from service.auth import require_tenant
from service.db import session_scope
from service.errors import APIError, IngestError
from service.ingest import SUPPORTED_FORMATS
from service.models import Tenant
from service.runtime import runtime
from service.storage import StoredFileMissing

blp = Blueprint(
    "datasets", __name__, url_prefix="/api/v1/datasets", description="Upload datasets and follow their sync"
)


@blp.before_request
def _authenticate():
    require_tenant()


def _upload_doc() -> dict:
    raw = {"schema": {"type": "string", "format": "binary"}}
    json_file = {"type": "string", "format": "binary", "description": "a JSON file (an array of objects)"}
    content = {
        "multipart/form-data": {"schema": DatasetUploadRequestSchema},
        # One media type, two bodies: a file when the query names the dataset, else records.
        "application/json": {"schema": {"oneOf": [DatasetRecordsRequestSchema, json_file]}},
    }
    content.update({media: raw for media in RAW_TYPES if media not in content})
    return {"required": True, "content": content}


def _raw_upload_parameters() -> list:
    return [
        {"in": "query", "schema": DatasetRawUploadQuerySchema},
        {
            "in": "header",
            "name": "Content-Disposition",
            "required": False,
            "schema": {"type": "string"},
            "description": "raw-body uploads: `attachment; filename=...` keeps the client's file name; "
            "with application/json it also marks the body as a JSON file",
        },
    ]


def _validation_error(err: ValidationError, location: str) -> APIError:
    messages = err.messages if isinstance(err.messages, dict) else {"_schema": err.messages}
    fields = "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in messages.items())
    return APIError(f"invalid request: {fields}", code="validation_error", status=422, details={location: err.messages})


def upload_from_form(tenant: Tenant, *, handled_fields: Collection[str] = ()):
    """The dataset of a multipart upload (part ``file``, the fields of UploadOptionsSchema)
    by ``tenant``. The web console's form posts the same fields, plus those it has
    checked itself (``handled_fields``: its CSRF token)."""
    upload = request.files.get("file")
    if upload is None:
        if request.files:
            names = ", ".join(sorted(request.files))
            raise APIError(f"no part named 'file' in the upload (got: {names})", code="missing_file")
        raise APIError("no file uploaded: send the dataset as the multipart part 'file'", code="missing_file")
    try:
        fields = {k: v for k, v in request.form.to_dict().items() if k not in handled_fields}
        form = DatasetUploadRequestSchema(partial=("file",)).load(fields)
        if upload.filename:
            try:
                storable_text(upload.filename)
            except ValidationError as err:
                raise ValidationError({"file": [f"the file name {m}" for m in err.messages]}) from None
    except ValidationError as err:
        raise _validation_error(err, "form") from None
    stream = upload.stream
    stream.flush()
    path = Path(stream.name) if isinstance(getattr(stream, "name", None), str) else None
    if path is None or path.stat().st_size == 0:
        raise IngestError("the uploaded file is empty", code="empty_file")
    return _create_from_file(tenant, path, form, original_file_name=upload.filename or None)


def _create_from_file(
    tenant: Tenant, path: Path, options: dict, *, original_file_name: str | None, extension: str | None = None
):
    """The dataset of an uploaded file at ``path``, with the options an UploadOptionsSchema
    loaded (from a multipart form or a raw body's query string)."""
    return service.create_from_file(
        runtime().store,
        runtime().ingest_settings,
        tenant,
        path,
        original_file_name=original_file_name,
        name=options.get("name"),
        description=options.get("description"),
        sync=service.upload_syncs(current_app.config, options.get("sync")),
        extension=extension,
        sheet=options.get("sheet"),
        records_path=options.get("records_path"),
        bad_rows=options["bad_rows"],
        schema_hints=options.get("schema_hints"),
    )


def _upload_from_raw(extension: str):
    """The file is the request body itself; its options come in the query string."""
    try:
        query = DatasetRawUploadQuerySchema().load(request.args.to_dict())
    except ValidationError as err:
        raise _validation_error(err, "query") from None
    file_name = disposition_file_name(request)
    if file_name:
        try:
            storable_text(file_name)
        except ValidationError as err:
            messages = {"filename": [f"the file name {m}" for m in err.messages]}
            raise _validation_error(ValidationError(messages), "headers") from None
    limit = int(current_app.config["MAX_UPLOAD_MB"]) * MB
    path = spool_body(
        request, runtime().store.incoming_dir, limit, empty=IngestError("the request body is empty", code="empty_file")
    )
    return _create_from_file(g.tenant, path, query, original_file_name=file_name, extension=extension)


def json_body_limit(config) -> int:
    """Bytes a JSON body may have: it is an upload too, so MAX_UPLOAD_MB bounds it as well."""
    return min(int(config["MAX_JSON_BODY_MB"]), int(config["MAX_UPLOAD_MB"])) * MB


def _body_labels(fields: dict) -> dict:
    """The checked members of a JSON body, as the dataset's labels."""
    try:
        data = DatasetRecordsRequestSchema().load(fields)
    except ValidationError as err:
        raise _validation_error(err, "json") from None
    return {
        "name": data["name"],
        "description": data["description"],
        "sync": service.upload_syncs(current_app.config, data["sync"]),
        "schema_hints": data.get("schema_hints"),
    }


def _upload_from_json():
    # Parsed as a stream from disk: the records never sit in memory all at once.
    store = runtime().store
    empty = IngestError("the request body is empty", code="invalid_json")
    path = spool_body(request, store.incoming_dir, json_body_limit(current_app.config), empty=empty)
    return service.create_from_body(store, runtime().ingest_settings, g.tenant, path, validate=_body_labels)


@blp.route("")
class Datasets(MethodView):
    @blp.arguments(DatasetListQuerySchema, location="query")
    @blp.response(200, DatasetListResponseSchema)
    @blp.doc(security=[{"bearerAuth": []}])
    def get(self, args):
        """List the tenant's datasets, newest first."""
        with session_scope() as session:
            items, total = service.list_for_tenant(
                session, g.tenant.id, limit=args["limit"], offset=args["offset"], status=args.get("status")
            )
            return {"items": items, "total": total, "limit": args["limit"], "offset": args["offset"]}

    @blp.doc(requestBody=_upload_doc(), parameters=_raw_upload_parameters(), security=[{"bearerAuth": []}])
    @blp.response(201, DatasetResponseSchema)
    @blp.alt_response(400, schema=ErrorResponseSchema)
    @blp.alt_response(401, schema=ErrorResponseSchema)
    @blp.alt_response(413, schema=ErrorResponseSchema)
    @blp.alt_response(415, schema=ErrorResponseSchema)
    @blp.alt_response(422, schema=ErrorResponseSchema)
    def post(self):
        """Upload a dataset (CSV, TSV, JSON, NDJSON, Parquet, Excel, or JSON records).

        Three bodies: multipart/form-data with the file as the part `file` and its options
        as fields; the file itself as the body (`curl --data-binary @f.csv -H 'Content-Type:
        text/csv'`), its format named by the Content-Type (text/csv,
        text/tab-separated-values, application/x-ndjson, application/json,
        application/vnd.apache.parquet,
        application/vnd.openxmlformats-officedocument.spreadsheetml.sheet; a gzip or Zstandard
        body carries its content's type) and the same options in the query string (`name`,
        `description`, `sync`, `sheet`, `records_path`, `bad_rows`, `schema_hints` as
        URL-encoded JSON; read for such bodies only, checked as the form fields are); or
        JSON records `{"name", "records"}`. An application/json body is a JSON file when the
        query string has one of those parameters, or the request has a Content-Disposition
        header; otherwise it is records.

        The file is stored as a local Parquet file at once; its sync to the lakehouse
        runs in the background, unless the upload (`sync=false`), AUTO_SYNC=false or
        SYNC_ENABLED=false keeps it `local_only`. Limits: the body at most MAX_UPLOAD_MB (a
        JSON body at most the smaller of MAX_JSON_BODY_MB and MAX_UPLOAD_MB; 413); at most
        MAX_COLUMNS columns (default 4096; 422 `too_many_columns`); JSON nested at most 64
        levels deep (400 `json_too_deep`); each Parquet row group decoding to at most
        PARQUET_DECODE_BUDGET_MB (default 256; 413 `parquet_too_large_to_decode`). A file name
        longer than 255 characters is stored cut to 255, its extension kept.
        """
        extension = raw_extension(request)
        if extension is not None:
            dataset = _upload_from_raw(extension)
        elif request.mimetype == "multipart/form-data":
            dataset = upload_from_form(g.tenant)
        elif request.mimetype == "application/json":
            dataset = _upload_from_json()
        else:
            raise APIError(
                f"unsupported content type {request.mimetype or '(none)'}: send the file as the body with its "
                f"type ({', '.join(RAW_TYPES)}), multipart/form-data with a 'file' part "
                f"({', '.join(SUPPORTED_FORMATS)}), or application/json with records",
                code="unsupported_media_type",
                status=415,
                details={"supported_formats": list(SUPPORTED_FORMATS)},
            )
        location = url_for("datasets.Dataset", dataset_id=dataset.id)
        return dataset, 201, {"Location": location}


@blp.route("/<uuid:dataset_id>")
class Dataset(MethodView):
    @blp.response(200, DatasetResponseSchema)
    @blp.alt_response(404, schema=ErrorResponseSchema)
    @blp.doc(security=[{"bearerAuth": []}])
    def get(self, dataset_id: uuid.UUID):
        """One dataset."""
        with session_scope() as session:
            return service.get_for_tenant(session, g.tenant.id, dataset_id)

    @blp.response(204)
    @blp.alt_response(404, schema=ErrorResponseSchema)
    @blp.doc(security=[{"bearerAuth": []}])
    def delete(self, dataset_id: uuid.UUID):
        """Delete the dataset: its bronze and silver tables, its local file and its record."""
        service.delete_dataset(g.tenant.id, dataset_id)


@blp.route("/<uuid:dataset_id>/sync")
class DatasetSync(MethodView):
    @blp.response(200, SyncStatusResponseSchema)
    @blp.alt_response(404, schema=ErrorResponseSchema)
    @blp.doc(security=[{"bearerAuth": []}])
    def get(self, dataset_id: uuid.UUID):
        """Where the dataset's sync is, its tables and the history of its runs."""
        with session_scope() as session:
            dataset = service.get_for_tenant(session, g.tenant.id, dataset_id)
            return service.sync_status(session, dataset)

    @blp.response(202, SyncStatusResponseSchema)
    @blp.alt_response(404, schema=ErrorResponseSchema)
    @blp.alt_response(409, schema=ErrorResponseSchema)
    @blp.doc(security=[{"bearerAuth": []}])
    def post(self, dataset_id: uuid.UUID):
        """Start a new sync run, the first one of a `local_only` dataset (409 while one is pending
        or running, and `sync_disabled` while SYNC_ENABLED=false)."""
        with session_scope() as session:
            dataset = service.get_for_tenant(session, g.tenant.id, dataset_id, lock=True)
            service.request_resync(session, dataset)
        with session_scope() as session:
            dataset = service.get_for_tenant(session, g.tenant.id, dataset_id)
            return service.sync_status(session, dataset)


@blp.route("/<uuid:dataset_id>/bad-rows")
class DatasetBadRows(MethodView):
    @blp.arguments(BadRowsQuerySchema, location="query")
    @blp.response(200, BadRowsResponseSchema)
    @blp.alt_response(404, schema=ErrorResponseSchema)
    @blp.doc(security=[{"bearerAuth": []}])
    def get(self, args, dataset_id: uuid.UUID):
        """Rows of the upload set aside with bad_rows=quarantine, in line order."""
        with session_scope() as session:
            dataset = service.get_for_tenant(session, g.tenant.id, dataset_id)
            items = service.bad_rows_page(session, dataset, limit=args["limit"], offset=args["offset"])
            return {"items": items, "total": dataset.bad_row_count, "limit": args["limit"], "offset": args["offset"]}


@blp.route("/<uuid:dataset_id>/rows")
class DatasetRows(MethodView):
    @blp.arguments(RowsQuerySchema, location="query")
    @blp.response(200, RowsResponseSchema)
    @blp.alt_response(404, schema=ErrorResponseSchema)
    @blp.doc(security=[{"bearerAuth": []}])
    def get(self, args, dataset_id: uuid.UUID):
        """Preview rows of the stored Parquet file."""
        with session_scope() as session:
            dataset = service.get_for_tenant(session, g.tenant.id, dataset_id)
        try:
            source = runtime().store.open(dataset.file_name)
        except StoredFileMissing:
            raise APIError(
                f"the stored file of dataset {dataset_id} is missing", code="file_missing", status=404
            ) from None
        with source:
            columns, rows, total = service.preview_rows(source, limit=args["limit"], offset=args["offset"])
        return {
            "dataset_id": dataset_id,
            "columns": columns,
            "rows": rows,
            "limit": args["limit"],
            "offset": args["offset"],
            "total": total,
        }


sync_blp = Blueprint("sync", __name__, url_prefix="/api/v1/sync", description="Bulk sync operations")


@sync_blp.before_request
def _authenticate_sync():
    require_tenant()


@sync_blp.route("")
class BulkSync(MethodView):
    @sync_blp.arguments(BulkResyncRequestSchema)
    @sync_blp.response(202, BulkResyncResponseSchema)
    @sync_blp.alt_response(409, schema=ErrorResponseSchema)
    @sync_blp.doc(security=[{"bearerAuth": []}])
    def post(self, args):
        """Start new sync runs for all the tenant's datasets in a status (failed, synced, or
        local_only for their first run); 409 `sync_disabled` while SYNC_ENABLED=false."""
        with session_scope() as session:
            ids = service.resync_where(session, tenant_id=g.tenant.id, status=args["status"])
        return {"requested": len(ids), "dataset_ids": ids}
