from marshmallow import Schema, ValidationError, fields, validate


def storable_text(value: str) -> None:
    """PostgreSQL text holds neither NUL characters nor unpaired surrogates."""
    if "\x00" in value:
        raise ValidationError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("must be valid Unicode (it contains an unpaired surrogate)") from None


class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"example": "malformed_csv"})
    message = fields.String(required=True)
    details = fields.Raw(metadata={"description": "What exactly is wrong (line, field, limits...)"})


class ErrorResponseSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)


class PageQuerySchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**31 - 1))


class PageResponseSchema(Schema):
    """What a page of a list answers besides its items: the total and the page asked for."""

    total = fields.Integer(required=True)
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)
