import json

from marshmallow import Schema, ValidationError, fields, validate

from schemas.common import PageQuerySchema, PageResponseSchema, storable_text
from service.ingest import SUPPORTED_FORMATS
from service.ingest.badrows import BAD_ROW_MODES
from service.models import SYNC_STATUSES
from service.transform.hints import HintError
from service.transform.hints import check_types as check_hint_types


def _sync_choice() -> fields.Boolean:
    # Strict: a typo such as "ture" must not silently pick a side.
    return fields.Boolean(
        truthy={True, "true", "1"},
        falsy={False, "false", "0"},
        load_default=None,
        allow_none=True,
        error_messages={"invalid": "must be true or false (or 1 or 0)"},
        metadata={
            "description": "start the sync now (true) or keep the dataset local_only until "
            "POST /api/v1/datasets/{id}/sync (false); default: AUTO_SYNC. With SYNC_ENABLED=false "
            "every upload stays local_only."
        },
    )


def _checked_hints(value) -> dict:
    try:
        return check_hint_types(value)
    except HintError as exc:
        raise ValidationError(exc.problems or str(exc)) from None


class HintsField(fields.Field):
    """``schema_hints``: a JSON object of column -> type; in a form, its JSON text."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValidationError("not valid JSON: expected an object of column name to type") from None
        return _checked_hints(value)


_HINTS_TEXT = (
    "column (source or silver name) -> string, integer, double, boolean, date, timestamp "
    "or decimal(p,s); values that do not fit become NULL in silver, their raw text kept "
    "in _rescued_data"
)
_HINTS_EXAMPLE = {"amount": "decimal(12,2)"}
_HINTS_DOC = {"description": _HINTS_TEXT, "example": _HINTS_EXAMPLE}


class UploadOptionsSchema(Schema):
    """What an uploaded file's sender may say about it: the fields of a multipart upload, and
    the query string of a raw-body upload."""

    name = fields.String(
        validate=[validate.Length(min=1, max=255), storable_text],
        metadata={
            "description": "the dataset's name (default: the file name's stem; for a raw body, the "
            "Content-Disposition file name's; else dataset)"
        },
    )
    description = fields.String(validate=[validate.Length(max=10_000), storable_text])
    sync = _sync_choice()
    sheet = fields.String(
        validate=[validate.Length(min=1, max=255), storable_text],
        metadata={"description": "the sheet of an .xlsx workbook to load (default: the first)"},
    )
    # A form field or a query parameter holds the object's JSON text (URL-encoded in a query).
    schema_hints = HintsField(
        metadata={
            "description": "a JSON object's text: " + _HINTS_TEXT,
            "type": "string",
            "example": json.dumps(_HINTS_EXAMPLE),
        }
    )
    bad_rows = fields.String(
        load_default="reject",
        validate=validate.OneOf(BAD_ROW_MODES),
        metadata={
            "description": "reject (default): a row that cannot be read refuses the file (400); "
            "quarantine: such rows are set aside (GET .../bad-rows), up to MAX_BAD_ROWS"
        },
    )
    records_path = fields.String(
        validate=[validate.Length(min=1, max=1000), storable_text],
        metadata={
            "description": "dotted path of the array of records inside a JSON object, e.g. data.items "
            "(default: the object's one member that is an array of objects)"
        },
    )


class DatasetUploadRequestSchema(UploadOptionsSchema):
    """multipart/form-data upload: the file as the part ``file``, the options as fields."""

    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


class BadRowsQuerySchema(PageQuerySchema):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class BadRowSchema(Schema):
    line = fields.Integer(required=True, metadata={"description": "1-based physical line where the row starts"})
    reason = fields.String(required=True)
    raw = fields.String(required=True, metadata={"description": "the row's text (its first 8,192 characters)"})


class BadRowsResponseSchema(PageResponseSchema):
    items = fields.List(fields.Nested(BadRowSchema), required=True)


class DialectSchema(Schema):
    delimiter = fields.String(required=True)
    quote = fields.String(allow_none=True, metadata={"description": "null: quotes are data"})
    escape = fields.String(allow_none=True)
    header_line = fields.Integer(required=True, metadata={"description": "1-based physical line of the header"})
    encoding = fields.String(required=True, metadata={"description": "utf-8, utf-8-sig, utf-16-le/-be or windows-1252"})


class DatasetRecordsRequestSchema(Schema):
    """application/json upload of records."""

    name = fields.String(required=True, validate=[validate.Length(min=1, max=255), storable_text])
    description = fields.String(
        load_default=None, allow_none=True, validate=[validate.Length(max=10_000), storable_text]
    )
    records = fields.List(fields.Dict(), required=True, validate=validate.Length(min=1))
    schema_hints = HintsField(metadata={**_HINTS_DOC, "type": "object"})
    sync = _sync_choice()


class ColumnSchema(Schema):
    name = fields.String(required=True, metadata={"description": "snake_case name in the silver table"})
    source_name = fields.String(required=True, metadata={"description": "name in the source file and the bronze table"})
    type = fields.String(required=True, metadata={"description": "silver type once inferred, else the source type"})
    source_type = fields.String()


class DatasetResponseSchema(Schema):
    id = fields.UUID(required=True)
    name = fields.String(required=True)
    description = fields.String(allow_none=True)
    source_format = fields.String(required=True, metadata={"enum": list(SUPPORTED_FORMATS)})
    original_file_name = fields.String(allow_none=True)
    file_name = fields.String(required=True, metadata={"description": "the stored Parquet file, <uuid>.parquet"})
    size_bytes = fields.Integer(required=True)
    row_count = fields.Integer(required=True)
    columns = fields.List(fields.Nested(ColumnSchema), required=True)
    dialect = fields.Nested(DialectSchema, allow_none=True, metadata={"description": "delimited files only"})
    records_path = fields.String(allow_none=True, metadata={"description": "where the records of a JSON object were"})
    compression = fields.String(allow_none=True, metadata={"enum": ["gzip", "zstd"]})
    sheet = fields.String(allow_none=True, metadata={"description": "the workbook sheet loaded"})
    bad_row_count = fields.Integer(metadata={"description": "rows set aside by bad_rows=quarantine"})
    created_at = fields.DateTime(required=True)
    sync_status = fields.String(
        required=True,
        metadata={"enum": list(SYNC_STATUSES), "description": "local_only until the dataset is first asked to sync"},
    )


class DatasetListQuerySchema(PageQuerySchema):
    status = fields.String(validate=validate.OneOf(SYNC_STATUSES))


class DatasetListResponseSchema(PageResponseSchema):
    items = fields.List(fields.Nested(DatasetResponseSchema), required=True)


class RowsQuerySchema(PageQuerySchema):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class RowsResponseSchema(PageResponseSchema):
    dataset_id = fields.UUID(required=True)
    columns = fields.List(fields.String(), required=True)
    rows = fields.List(fields.Dict(), required=True)


class DatasetRawUploadQuerySchema(UploadOptionsSchema):
    """The query string of a raw-body upload (the file is the request body, named by its
    Content-Type): the same options as a multipart upload's fields."""
