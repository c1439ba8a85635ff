"""Error types that carry an HTTP status and a JSON body of the form
``{"error": {"code": ..., "message": ..., "details": ...}}``."""

from __future__ import annotations


class APIError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None, details=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details if details is not None else {}

    def to_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class IngestError(APIError):
    """The uploaded content cannot be accepted (bad format, malformed rows...)."""


class NotFound(APIError):
    status = 404
    code = "not_found"


class Conflict(APIError):
    status = 409
    code = "conflict"


class Unauthorized(APIError):
    status = 401
    code = "unauthorized"
