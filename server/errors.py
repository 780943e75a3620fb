"""API exceptions and the one registry that maps them to HTTP statuses."""
from __future__ import annotations

from typing import Any


class APIError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.message, self.details = message, details


class BadRequest(APIError):
    status, code = 400, "bad_request"


class Unauthorized(APIError):
    status, code = 401, "unauthorized"


class Forbidden(APIError):
    status, code = 403, "forbidden"


class NotFound(APIError):
    status, code = 404, "not_found"


class Conflict(APIError):
    status, code = 409, "conflict"


class PayloadTooLarge(APIError):
    status, code = 413, "payload_too_large"


class ValidationFailed(APIError):
    status, code = 422, "validation_error"


class QuotaExceeded(APIError):
    status, code = 403, "quota_exceeded"


class Unavailable(APIError):
    status, code = 503, "unavailable"


def from_pydantic(exc, prefix: tuple = ()) -> ValidationFailed:
    """A pydantic ValidationError as a 422 with field paths."""
    details = [{"loc": [*prefix, *e["loc"]], "msg": e["msg"]} for e in exc.errors()]
    first = details[0] if details else {"loc": [], "msg": "invalid"}
    where = ".".join(str(p) for p in first["loc"])
    return ValidationFailed(f"{where}: {first['msg']}" if where else first["msg"], details)
