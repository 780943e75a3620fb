"""Error codes of the API and the typed errors of the SDK — the one registry.

Every error the API answers is JSON `{"error": <code>, "message": …, "details": …}`.
`ERROR_CODES` maps each code to its HTTP status and the SDK exception raised for it; the
middleware (`server/errors.py`), the Jupyter extension and the SDK all read it.
"""
from __future__ import annotations

from typing import NamedTuple


class HPCBridgeError(Exception):
    """Base of every SDK error."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None,
                 details: list | None = None):
        super().__init__(message)
        self.message, self.status, self.code, self.details = message, status, code, details or []


class ConfigurationError(HPCBridgeError):
    """The SDK does not know where the middleware is or who you are."""


class AuthError(HPCBridgeError):
    """The token is missing, invalid, or not allowed to do this (401/403)."""


class NotFound(HPCBridgeError):
    """No such job, app or result — or it belongs to someone else (404)."""


class ValidationError(HPCBridgeError):
    """The middleware refused the input (400/413/422); `fields` maps 'params.n' → message."""

    @property
    def fields(self) -> dict[str, str]:
        return {".".join(str(p) for p in d.get("loc", [])): d.get("msg", "")
                for d in self.details}


class Conflict(HPCBridgeError):
    """The request does not fit the job's state (409), e.g. cancelling a finished job."""


class QuotaExceeded(AuthError):
    """Your compute quota is used up."""


class Unavailable(HPCBridgeError):
    """The middleware (or something behind it) cannot be reached now (502/503, network)."""


class JobFailed(HPCBridgeError):
    """Raised by Job.wait(raise_on_failure=True) when the job did not succeed."""


class ErrorCode(NamedTuple):
    status: int
    sdk_error: type[HPCBridgeError]


ERROR_CODES: dict[str, ErrorCode] = {
    "bad_request": ErrorCode(400, ValidationError),
    "unauthorized": ErrorCode(401, AuthError),
    "forbidden": ErrorCode(403, AuthError),
    "quota_exceeded": ErrorCode(403, QuotaExceeded),
    "not_found": ErrorCode(404, NotFound),
    "method_not_allowed": ErrorCode(405, HPCBridgeError),
    "conflict": ErrorCode(409, Conflict),
    "session_quota_exceeded": ErrorCode(409, QuotaExceeded),
    "payload_too_large": ErrorCode(413, ValidationError),
    "validation_error": ErrorCode(422, ValidationError),
    "too_many_requests": ErrorCode(429, Unavailable),
    "internal_error": ErrorCode(500, HPCBridgeError),
    "bad_gateway": ErrorCode(502, Unavailable),
    "unavailable": ErrorCode(503, Unavailable),
    "middleware_unreachable": ErrorCode(503, Unavailable),
    "gateway_timeout": ErrorCode(504, Unavailable),
}
# the code of an error that carries only an HTTP status (e.g. tornado's own 404)
CODE_OF_STATUS: dict[int, str] = {}
for _code, _entry in ERROR_CODES.items():
    CODE_OF_STATUS.setdefault(_entry.status, _code)


def code_for_status(status: int) -> str:
    return CODE_OF_STATUS.get(status, "internal_error" if status >= 500 else "bad_request")


def error_body(code: str, message: str, details: list | None = None) -> dict:
    """The JSON body of every API error."""
    return {"error": code, "message": message, "details": details}


def error_for(status: int, body: dict) -> HPCBridgeError:
    """The SDK exception for an error answer: by its code, else by its HTTP status."""
    code = body.get("error")
    message = body.get("message") or f"HTTP {status}"
    details = body.get("details") or []
    entry = ERROR_CODES.get(code) or ERROR_CODES.get(CODE_OF_STATUS.get(status, ""))
    cls = entry.sdk_error if entry else HPCBridgeError
    return cls(message, status, code, details)
