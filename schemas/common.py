from marshmallow import Schema, fields, validate


class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"example": "malformed_csv"})
    message = fields.String(required=True)
    details = fields.Raw(metadata={"description": "What exactly is wrong (line, field, limits...)"})


class ErrorResponseSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)


class PageQuerySchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**31 - 1))
