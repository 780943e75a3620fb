"""Typed errors of the SDK: what went wrong, in words, with the field paths of bad input."""
from __future__ import annotations


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
    """The middleware refused the input (400/422); `fields` maps 'params.n' → message."""

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


def error_for(status: int, body: dict) -> HPCBridgeError:
    code = body.get("error")
    message = body.get("message") or f"HTTP {status}"
    details = body.get("details") or []
    if code == "quota_exceeded":
        cls = QuotaExceeded
    else:
        cls = {400: ValidationError, 401: AuthError, 403: AuthError, 404: NotFound,
               409: Conflict, 422: ValidationError, 502: Unavailable, 503: Unavailable,
               504: Unavailable}.get(status, HPCBridgeError)
    return cls(message, status, code, details)
