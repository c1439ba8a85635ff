from marshmallow import Schema, fields


class UsageDatasetsSchema(Schema):
    total = fields.Integer(required=True, metadata={"description": "every dataset, local-only ones included"})
    local_only = fields.Integer(required=True, metadata={"description": "never asked to sync"})
    synced = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    pending = fields.Integer(required=True, metadata={"description": "waiting for their sync to start"})
    syncing = fields.Integer(required=True, metadata={"description": "in the middle of a sync"})


class UploadsOnDaySchema(Schema):
    day = fields.Date(required=True, metadata={"example": "2026-12-06"})
    uploads = fields.Integer(required=True)


class TimeToSyncedSchema(Schema):
    mean = fields.Float(allow_none=True, required=True, metadata={"description": "null before the first synced run"})
    p95 = fields.Float(allow_none=True, required=True)
    runs = fields.Integer(required=True, metadata={"description": "synced runs the figures are over"})


class UsageResponseSchema(Schema):
    datasets = fields.Nested(UsageDatasetsSchema, required=True)
    sync_percentage = fields.Float(
        required=True,
        metadata={
            "description": "synced / (total − local_only) × 100, one decimal: the share of the datasets asked to sync "
            "that are synced"
        },
    )
    rows = fields.Integer(required=True, metadata={"description": "rows of all the tenant's datasets"})
    bytes = fields.Integer(required=True, metadata={"description": "bytes of the tenant's stored Parquet files"})
    uploads_by_day = fields.List(
        fields.Nested(UploadsOnDaySchema),
        required=True,
        metadata={
            "description": "datasets uploaded on each of the last 30 days (UTC), oldest first, deleted ones not counted"
        },
    )
    time_to_synced_seconds = fields.Nested(
        TimeToSyncedSchema,
        required=True,
        metadata={"description": "from a run's request (the upload, or a resync) to its datasets being synced"},
    )
