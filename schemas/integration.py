from marshmallow import Schema, fields


class CatalogInitializeResponseSchema(Schema):
    target = fields.String(required=True, metadata={"example": "databricks"})
    catalog = fields.String(required=True, metadata={"example": "tenant_acme"})
    schemas = fields.List(
        fields.String(),
        required=True,
        metadata={"example": ["tenant_acme.bronze", "tenant_acme.silver", "tenant_acme.staging"]},
    )
    volumes = fields.List(
        fields.String(), load_default=list, dump_default=list, metadata={"example": ["tenant_acme.staging.staging"]}
    )
    details = fields.Dict(keys=fields.String(), metadata={"description": "Anything else the target reports"})


class IntegrationStatusResponseSchema(Schema):
    target = fields.String(required=True, metadata={"example": "databricks"})
    reachable = fields.Boolean(required=True)
    error = fields.String(allow_none=True, metadata={"description": "Why the target cannot be reached"})
    details = fields.Dict(keys=fields.String(), metadata={"description": "Non-secret facts about the target"})
    sync_enabled = fields.Boolean(required=True, metadata={"description": "SYNC_ENABLED: whether datasets sync at all"})
    auto_sync = fields.Boolean(required=True, metadata={"description": "AUTO_SYNC: whether an upload syncs by default"})
    datasets_total = fields.Integer(required=True, metadata={"description": "every dataset, local-only ones included"})
    local_only = fields.Integer(required=True, metadata={"description": "datasets never asked to sync"})
    synced = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    pending = fields.Integer(required=True)
    syncing = fields.Integer(required=True)
    sync_percentage = fields.Float(
        required=True,
        metadata={
            "description": "synced / (total − local_only) × 100, one decimal: the share of the datasets "
            "asked to sync that are synced"
        },
    )
