"""The API's models of interactive sessions (issue #22): shared by server and SDK."""
from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import Field

from hpcbridge.schemas import EventInfo, Model, Resources

SessionStatus = Literal["starting", "running", "stopping", "stopped"]
SESSION_STATUSES: tuple[str, ...] = ("starting", "running", "stopping", "stopped")
ACTIVE_SESSION_STATUSES: tuple[str, ...] = ("starting", "running", "stopping")
# the header a client that reaches the middleware through a prefix (the Jupyter extension)
# sends on POST /sessions: the service is then served under <prefix>/sessions/<id>/proxy/
API_PREFIX_HEADER = "X-HPCBridge-API-Prefix"


class SessionCreate(Model):
    app: str = Field(description="an app whose manifest has \"kind\": \"service\"")
    hpc: str | None = None
    params: dict[str, Any] = {}
    resources: Resources = Resources()


class SessionInfo(Model):
    id: str
    user: str
    app: str
    hpc: str
    status: SessionStatus
    message: str | None = None
    created_at: dt.datetime
    running_at: dt.datetime | None = None
    stopped_at: dt.datetime | None = None
    updated_at: dt.datetime
    time_limit_seconds: int | None = Field(None, description="the scheduler's limit of the "
                                           "session's job")
    charged_seconds: float = Field(0, description="wall seconds charged to the session "
                                   "quota so far")
    last_activity_at: dt.datetime | None = None
    url: str = Field(description="the proxy path of the session's service as the caller "
                                 "sees it (ends with /); open it once status is running")


class SessionQuota(Model):
    limit_seconds: float | None = Field(None, description="wall seconds of sessions "
                                        "allowed; null = no limit")
    used_seconds: float = 0


class SessionQuotaUpdate(Model):
    limit_seconds: float | None = Field(None, ge=0, description="null = the site's default")


# OpenAPI entries, in hpcbridge.server.openapi's ROUTES form:
# (method, path, summary, request model, {status: response model or [model]}, admin)
# The proxy answers what the session's service answers (any method, HTTP and WebSocket):
# see docs/sessions.md.
PROXY = "/sessions/{session_id}/proxy/{path}"
PROXY_SUMMARY = ("The session's service, through the proxy (also HEAD, OPTIONS and a "
                 "WebSocket upgrade on GET); 502/504 when the service does not answer")
ROUTES: list[tuple] = [
    ("get", "/sessions", "The caller's interactive sessions (admins: ?all=1)", None,
     {200: [SessionInfo]}, False),
    ("post", "/sessions", "Start an interactive session (an app of kind service)",
     SessionCreate, {201: SessionInfo}, False),
    ("get", "/sessions/quota", "The caller's session time quota", None,
     {200: SessionQuota}, False),
    ("get", "/sessions/{session_id}", "One session", None, {200: SessionInfo}, False),
    ("delete", "/sessions/{session_id}", "Stop a session", None, {202: SessionInfo}, False),
    ("post", "/sessions/{session_id}/keepalive", "Record activity: the idle stop waits",
     None, {204: None}, False),
    ("get", "/sessions/{session_id}/events", "A session's events", None,
     {200: [EventInfo]}, False),
    *((method, PROXY, PROXY_SUMMARY, None, {200: "binary"}, False)
      for method in ("get", "post", "put", "patch", "delete")),
    ("put", "/admin/users/{name}/session-quota", "Set a user's session time quota (admin)",
     SessionQuotaUpdate, {200: SessionQuota}, True),
]
QUERY: dict[str, list] = {  # path -> [(name, schema)], like openapi.QUERY
    "/sessions": [("all", {"type": "string", "description": "admins: 1 = everybody's "
                                                          "sessions"})],
}
