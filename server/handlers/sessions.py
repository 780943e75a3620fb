"""Routes of interactive sessions: start, list, stop, keepalive, and the proxy to the running service (issue #22)."""
from __future__ import annotations

import datetime as dt
import math
import re
import secrets
from types import SimpleNamespace
from typing import Any

from hpcbridge import schemas as S
from hpcbridge import schemas_sessions as SS
from hpcbridge.clock import aware

from .. import errors as E
from ..models import new_id
from ..submission import app_info, check_open, check_rules, find_app
from .base import APIHandler

SID = r"(?P<session_id>[0-9a-f]{32})"
# a prefix as a client sends it: an absolute path of safe characters, no '..' segment
PREFIX = re.compile(r"(/[A-Za-z0-9_.~@+%-]+)+")


def routes(prefix: str) -> list[tuple]:
    """(pattern, handler) pairs under the API prefix (e.g. /api/v1)."""
    from ..sessionproxy import ProxyHandler  # the proxy's module imports this one
    p = prefix.rstrip("/")
    return [
        (rf"{p}/sessions", SessionsHandler),
        (rf"{p}/sessions/quota", SessionQuotaHandler),
        (rf"{p}/sessions/{SID}", SessionHandler),
        (rf"{p}/sessions/{SID}/keepalive", SessionKeepaliveHandler),
        (rf"{p}/sessions/{SID}/events", SessionEventsHandler),
        (rf"{p}/sessions/{SID}/proxy/(?P<rest>.*)", ProxyHandler),
        (rf"{p}/sessions/(?P<session_id>[^/]+)(?:/.*)?", SessionNotFoundHandler),
        (rf"{p}/admin/users/(?P<name>[^/]+)/session-quota", AdminSessionQuotaHandler),
    ]


def caller_prefix(headers, default: str) -> str:
    """The API prefix as the caller reaches it: the X-HPCBridge-API-Prefix header (a
    client behind a prefix, e.g. the Jupyter extension), else the middleware's own."""
    raw = headers.get(SS.API_PREFIX_HEADER)
    if raw is None:
        return default.rstrip("/")
    value = raw.strip().rstrip("/")
    if len(value) > 500 or not PREFIX.fullmatch(value) or ".." in value.split("/") or \
            "%2f" in value.lower() or "%2e" in value.lower():
        raise E.ValidationFailed(
            f"{SS.API_PREFIX_HEADER} must be an absolute path of letters, digits and "
            "_.~@+%-, without '..'",
            [{"loc": ["header", SS.API_PREFIX_HEADER], "msg": "not a safe path"}])
    return value


def proxy_path(prefix: str, session_id: str) -> str:
    return f"{prefix}/sessions/{session_id}/proxy/"


def session_info(record, prefix: str) -> SS.SessionInfo:
    data = {name: getattr(record, name) for name in SS.SessionInfo.model_fields
            if name != "url"}
    data = {k: aware(v) if isinstance(v, dt.datetime) else v for k, v in data.items()}
    return SS.SessionInfo(**data, url=proxy_path(prefix, record.id))


class SessionAPIHandler(APIHandler):
    @property
    def settings_(self):
        return self.ctx.session_settings

    def prefix(self) -> str:
        return caller_prefix(self.request.headers, self.ctx.api_prefix)

    def own_session(self, session_id: str):
        """The caller's session (admins: anyone's); another user's does not exist (404)."""
        record = self.ctx.store.get_session(session_id,
                                            user=None if self.user.admin else self.user.name)
        if record is None:
            raise E.NotFound(f"no session {session_id}")
        return record


class SessionRequest(SS.SessionCreate):
    """SessionCreate as it arrives: resources as sent, judged by the manifest's rules."""

    resources: dict[str, Any] = {}


class SessionsHandler(SessionAPIHandler):
    def get(self):
        every = self.user.admin and self.get_query_argument("all", "") == "1"
        records = self.ctx.store.list_sessions(None if every else self.user.name)
        prefix = self.prefix()
        self.send([session_info(r, prefix) for r in records])

    def post(self):
        ctx, conf = self.ctx, self.ctx.session_settings
        prefix = self.prefix()  # validated before anything is recorded
        request = self.body(SessionRequest)
        app = find_app(ctx.store, request.app, kind="service")
        hpc_id, params, resources = check_rules(
            app_info(app, ctx.hpcs), ctx.hpcs,
            SimpleNamespace(hpc=request.hpc, params=request.params,
                            resources=request.resources, upload=None), lambda _: False)
        check_open(ctx.store, hpc_id)
        left = self.quota_left(conf)
        if ctx.store.count_active_sessions(self.user.name) >= conf.max_per_user:
            raise E.Conflict(f"you already have {conf.max_per_user} sessions starting or "
                             "running (the most allowed); stop one first")
        minutes = int(resources.get("time") or conf.default_time_minutes)
        if left is not None:  # the scheduler ends it when the quota is spent
            minutes = max(1, min(minutes, math.ceil(left / 60)))
        session_id = new_id()
        record = ctx.store.create_session(
            id=session_id, user=self.user.name, app=app.id, hpc=hpc_id, params=params,
            resources={**resources, "time": minutes}, time_limit_seconds=minutes * 60,
            base_url=proxy_path(prefix, session_id), secret=secrets.token_urlsafe(32))
        self.set_header("Location", f"{ctx.api_prefix}sessions/{record.id}")
        self.send(session_info(record, prefix), 201)

    def quota_left(self, conf) -> float | None:
        """Seconds of session time the caller has left (None: no limit); 409 when none."""
        limit, used = self.ctx.store.session_quota(self.user.name, conf.default_quota_seconds)
        if limit is None:
            return None
        if used >= limit:
            raise E.SessionQuotaExceeded(
                f"session time quota used up: {used / 3600:.2f} of {limit / 3600:.2f} hours "
                f"({used:.0f} of {limit:.0f} s) used; ask an administrator for more")
        return limit - used


class SessionHandler(SessionAPIHandler):
    def get(self, session_id):
        self.send(session_info(self.own_session(session_id), self.prefix()))

    def delete(self, session_id):
        record = self.own_session(session_id)
        if record.status in ("starting", "running"):
            who = "its owner" if record.user == self.user.name else \
                f"the administrator {self.user.name}"
            record = self.ctx.store.request_session_stop(record.id, f"stop requested by {who}")
        self.send(session_info(record, self.prefix()), 202)


class SessionKeepaliveHandler(SessionAPIHandler):
    def post(self, session_id):
        record = self.own_session(session_id)
        if record.status == "stopped":
            raise E.Conflict(f"session {session_id} is stopped")
        self.ctx.store.touch_session(record.id)
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


class SessionEventsHandler(SessionAPIHandler):
    def get(self, session_id):
        record = self.own_session(session_id)
        self.send([S.EventInfo(time=aware(e.time), type=e.type, message=e.message)
                   for e in self.ctx.store.session_events(record.id)])


class SessionQuotaHandler(SessionAPIHandler):
    def get(self):
        limit, used = self.ctx.store.session_quota(
            self.user.name, self.ctx.session_settings.default_quota_seconds)
        self.send(SS.SessionQuota(limit_seconds=limit, used_seconds=used))


class AdminSessionQuotaHandler(SessionAPIHandler):
    def put(self, name):
        self.require_admin()
        data = self.body(SS.SessionQuotaUpdate)
        self.ctx.store.set_session_quota(name, data.limit_seconds)
        limit, used = self.ctx.store.session_quota(
            name, self.ctx.session_settings.default_quota_seconds)
        self.send(SS.SessionQuota(limit_seconds=limit, used_seconds=used))


class SessionNotFoundHandler(APIHandler):
    auth_required = False

    def prepare(self):
        raise E.NotFound(f"no session {self.path_kwargs.get('session_id')}")
