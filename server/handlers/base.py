"""The base of every REST handler: JSON in, JSON out, one error shape, who is calling."""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import traceback
import uuid

from pydantic import BaseModel, ValidationError
from tornado import web

from hpcbridge import joblog
from hpcbridge import schemas as S
from hpcbridge.clock import aware
from hpcbridge.errors import code_for_status
from hpcbridge.lifecycle import STATUSES
from hpcbridge.manifest import ManifestError

from .. import errors as E
from ..auth import User, token_from_header
from ..limits import DEFAULT_MAX_BODY_BYTES
from ..secrets import loggable_path

log = logging.getLogger("hpcbridge.server")


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def job_info(job) -> S.JobInfo:
    data = {name: getattr(job, name) for name in S.JobInfo.model_fields}
    return S.JobInfo(**{k: aware(v) if isinstance(v, dt.datetime) else v
                        for k, v in data.items()})


def error_of(exc, status_code: int, reason: str) -> tuple[int, S.ErrorBody]:
    """The status and body answered for an exception (or a bare HTTP status)."""
    if isinstance(exc, ManifestError):  # the manifest rules' neutral error is a 422
        exc = E.ValidationFailed(exc.message, exc.details)
    if isinstance(exc, E.APIError):
        return exc.status, S.ErrorBody(
            error=exc.code, message=exc.message,
            details=[S.ErrorDetail(**d) for d in exc.details] if exc.details else None)
    if isinstance(exc, web.HTTPError) and status_code < 500:
        return status_code, S.ErrorBody(error=code_for_status(status_code),
                                        message=exc.log_message or reason)
    error_id = uuid.uuid4().hex[:12]
    return 500, S.ErrorBody(error="internal_error", error_id=error_id,
                            message=f"internal error {error_id}; the administrators "
                                    "can find it in the middleware's log")


def declared_length(request) -> int | None:
    """The Content-Length a request announces (None for a chunked or empty one)."""
    length = request.headers.get("Content-Length")
    return int(length) if length is not None and length.strip().isdigit() else None


@web.stream_request_body
class APIHandler(web.RequestHandler):
    """JSON in, JSON out; every error is `{"error", "message", "details"}`.

    Every route streams its body in, so that a body is bounded before it is read: one
    announced larger than ctx.max_body_bytes is refused (413) before authentication and
    unread, a chunked one as soon as it passes the bound; at most that much is held."""

    auth_required = True
    user: User
    _body: bytearray | None = None
    _body_limit = DEFAULT_MAX_BODY_BYTES

    @property
    def ctx(self):
        return self.settings["ctx"]

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    async def prepare(self):
        self._body = bytearray()
        self._body_limit = getattr(self.ctx, "max_body_bytes", DEFAULT_MAX_BODY_BYTES)
        self.refuse_larger_than(self._body_limit)
        await self.authenticate()
        # tornado answers a bare 400 when a chunk header declares more than its bound:
        # lift it, data_received enforces ours in pieces of <= 64 KiB and answers a 413
        self.request.connection.set_max_body_size(1 << 62)

    async def authenticate(self) -> None:
        if self.auth_required:
            self.user = await self.ctx.authenticator.authenticate(self.token())

    def token(self) -> str | None:
        return token_from_header(self.request.headers.get("Authorization"))

    def refuse_larger_than(self, limit: int, what: str = "request body") -> None:
        length = declared_length(self.request)
        if length is not None and length > limit:
            raise E.PayloadTooLarge(f"{what} larger than the limit of {limit} bytes")

    def data_received(self, chunk):
        if self._finished or self._body is None:
            return
        if len(self._body) + len(chunk) > self._body_limit:
            self._body = None  # nothing more is kept; the client reads a 413 at once
            self.send_error(413, exc_info=(None, E.PayloadTooLarge(
                f"request body larger than the limit of {self._body_limit} bytes"), None))
            return
        self._body += chunk

    def body_read(self) -> bool:
        future = getattr(self.request, "_body_future", None)
        return future is None or future.done()

    def require_admin(self):
        if not self.user.admin:
            raise E.Forbidden("this needs an admin of the JupyterHub")

    def body(self, model: type[BaseModel]) -> BaseModel:
        try:
            data = json.loads(bytes(self._body or b"") or b"{}", parse_constant=_no_constant,
                              parse_float=_finite_float)
        except (ValueError, RecursionError) as exc:
            # JSONDecodeError, UnicodeDecodeError, NaN/Infinity, ints past Python's
            # 4300-digit limit, nesting deeper than the recursion limit: all bad input
            raise E.BadRequest(f"the body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise E.BadRequest("the body must be a JSON object")
        where = _nul_at(data)
        if where is not None:  # no database stores a NUL in text (PostgreSQL refuses it)
            raise E.ValidationFailed(f"{'.'.join(map(str, where)) or 'body'}: must not "
                                     "contain NUL bytes",
                                     [{"loc": list(where), "msg": "must not contain NUL bytes"}])
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise E.from_pydantic(exc) from None

    def send(self, value, status: int = 200):
        self.set_status(status)
        if isinstance(value, BaseModel):
            self.finish(value.model_dump_json())
        elif isinstance(value, list):
            self.finish("[" + ",".join(v.model_dump_json() for v in value) + "]")
        else:
            self.finish(json.dumps(value))

    def int_arg(self, name: str, default: int, lo: int = 0, hi: int = 10**12) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise E.ValidationFailed(f"{name} must be an integer",
                                     [{"loc": ["query", name], "msg": "must be an integer"}]
                                     ) from None
        if not lo <= value <= hi:
            raise E.ValidationFailed(f"{name} must be between {lo} and {hi}",
                                     [{"loc": ["query", name], "msg": f"between {lo} and {hi}"}])
        return value

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        status_code, body = error_of(exc, status_code, self._reason)
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        if not self.body_read():
            # answered before the body was read: tornado closes the connection after this
            # response, and a client must not send its next request on it
            self.set_header("Connection", "close")
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json")
        self.finish(body.model_dump_json())

    def allowed_methods(self) -> list[str]:
        return [m for m in self.SUPPORTED_METHODS if getattr(type(self), m.lower(), None)
                is not web.RequestHandler._unimplemented_method]

    def log_exception(self, typ, value, tb):
        if isinstance(value, E.APIError):
            if value.status >= 500:
                log.warning("%s %s: %s", self.request.method,
                            loggable_path(self.request.path, value.status), value.message)
            return
        if isinstance(value, ManifestError) or \
                isinstance(value, web.HTTPError) and value.status_code < 500:
            return
        log.error("unexpected error on %s %s\n%s", self.request.method,
                  loggable_path(self.request.path, 500),
                  "".join(traceback.format_exception(typ, value, tb)))

    def own_job(self, job_id: str, admin_view: bool = False):
        """The caller's job; someone else's job does not exist for them (404)."""
        user = None if (admin_view and self.user.admin) else self.user.name
        job = self.ctx.store.get_job(job_id, user=user)
        if job is None:
            raise E.NotFound(f"no job {job_id}")
        joblog.bind(job)  # this request's log lines name the job (its own context)
        return job

    def status_filter(self) -> list[str]:
        """?status=running,queued (or repeated): known statuses only."""
        statuses = [s for v in self.get_query_arguments("status") for s in v.split(",") if s]
        bad = [s for s in statuses if s not in STATUSES]
        if bad:
            raise E.ValidationFailed(
                f"unknown status {bad[0]}; known: {', '.join(sorted(STATUSES))}",
                [{"loc": ["query", "status"], "msg": "unknown status"}])
        return statuses

    def job_user_filter(self) -> str | None:
        """Admins pass ?all=1 to see everybody's jobs through the same routes."""
        return None if (self.user.admin and self.get_query_argument("all", "") == "1") \
            else self.user.name


def _nul_at(value, loc: tuple = ()) -> tuple | None:
    """The path of the first string (key or value) holding a NUL character, if any."""
    if isinstance(value, str):
        return loc if "\0" in value else None
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        if isinstance(key, str) and "\0" in key:
            return (*loc, key)
        found = _nul_at(item, (*loc, key))
        if found is not None:
            return found
    return None
