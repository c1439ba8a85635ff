from marshmallow import Schema, fields


class HealthResponseSchema(Schema):
    status = fields.String(required=True)


class ReadyResponseSchema(Schema):
    status = fields.String(required=True, metadata={"enum": ["ready", "unavailable"]})
    checks = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
