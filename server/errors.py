"""API exceptions; their codes and statuses come from the one registry (hpcbridge.errors)."""
from __future__ import annotations

from typing import Any

from hpcbridge.errors import ERROR_CODES
from hpcbridge.manifest import field_errors


class APIError(Exception):
    code = "internal_error"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.message, self.details = message, details

    @property
    def status(self) -> int:
        return ERROR_CODES[self.code].status


class BadRequest(APIError):
    code = "bad_request"


class Unauthorized(APIError):
    code = "unauthorized"


class Forbidden(APIError):
    code = "forbidden"


class NotFound(APIError):
    code = "not_found"


class Conflict(APIError):
    code = "conflict"


class PayloadTooLarge(APIError):
    code = "payload_too_large"


class ValidationFailed(APIError):
    code = "validation_error"


class QuotaExceeded(APIError):
    code = "quota_exceeded"


class SessionQuotaExceeded(APIError):
    code = "session_quota_exceeded"  # 409: the session time is spent, not the CPU quota


class TooManyRequests(APIError):
    code = "too_many_requests"


class Unavailable(APIError):
    code = "unavailable"


def from_pydantic(exc, prefix: tuple = ()) -> ValidationFailed:
    """A pydantic ValidationError as a 422 with field paths."""
    error = field_errors(exc, prefix)
    return ValidationFailed(error.message, error.details)
