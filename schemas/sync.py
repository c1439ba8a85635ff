from marshmallow import Schema, fields, validate

from service.models import LOCAL_ONLY, SYNC_STATUSES, SYNC_STEPS


class SyncStepResponseSchema(Schema):
    step = fields.String(required=True, metadata={"enum": list(SYNC_STEPS)})
    status = fields.String(required=True, metadata={"enum": ["pending", "running", "retrying", "succeeded", "failed"]})
    attempts = fields.Integer(required=True)
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    duration_ms = fields.Integer(allow_none=True)
    rows = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)


class SyncRunResponseSchema(Schema):
    id = fields.UUID(required=True)
    trigger = fields.String(required=True)
    request_id = fields.String(
        allow_none=True,
        metadata={
            "description": "id of the request that started the run (X-Request-ID), or generated; its task log lines carry it"
        },
    )
    status = fields.String(required=True)
    step = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    duration_ms = fields.Integer(allow_none=True)
    steps = fields.List(fields.Nested(SyncStepResponseSchema), required=True)


class SyncStatusResponseSchema(Schema):
    dataset_id = fields.UUID(required=True)
    status = fields.String(required=True, metadata={"enum": list(SYNC_STATUSES)})
    step = fields.String(allow_none=True, metadata={"enum": list(SYNC_STEPS)})
    attempts = fields.Integer(required=True, metadata={"description": "step attempts made by the current run"})
    target = fields.String(allow_none=True)
    bronze_table = fields.String(allow_none=True, metadata={"example": "tenant_acme.bronze.revenue_q1_1a2b3c4d"})
    silver_table = fields.String(allow_none=True)
    quarantine_table = fields.String(
        allow_none=True,
        metadata={
            "description": "the upload's bad rows beside bronze (bad_rows=quarantine); null when there are "
            "none or the target cannot hold the table (MCP)"
        },
    )
    bad_row_count = fields.Integer(metadata={"description": "rows set aside at upload"})
    values_rescued = fields.Integer(
        allow_none=True,
        metadata={
            "description": "values of hinted columns that did not fit their type: NULL in silver, their "
            "raw text in _rescued_data (null without hints, or on a target that does not "
            "count them)"
        },
    )
    bronze_location = fields.String(allow_none=True)
    silver_location = fields.String(allow_none=True)
    row_count_local = fields.Integer(required=True)
    row_count_bronze = fields.Integer(allow_none=True)
    row_count_silver = fields.Integer(allow_none=True)
    duplicates_removed = fields.Integer(allow_none=True)
    last_sync_at = fields.DateTime(allow_none=True)
    last_error = fields.String(allow_none=True)
    runs = fields.List(fields.Nested(SyncRunResponseSchema), required=True)


class BulkResyncRequestSchema(Schema):
    status = fields.String(
        required=True,
        validate=validate.OneOf([LOCAL_ONLY, "synced", "failed"]),
        metadata={"example": "failed", "description": "local_only starts the first run of every local-only dataset"},
    )


class BulkResyncResponseSchema(Schema):
    requested = fields.Integer(required=True)
    dataset_ids = fields.List(fields.UUID(), required=True)
