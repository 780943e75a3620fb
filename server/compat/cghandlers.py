"""The base of the CyberGIS routes (who is calling, the error shape) and the routes that
describe the site: HPCs, apps (`git`), maintainers, containers, the allowlist, the user."""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from hpcbridge.lifecycle import FINAL
from hpcbridge.manifest import ManifestError

from .. import errors as E
from ..auth import User
from ..handlers.base import APIHandler, error_of
from ..submission import app_info
from .cgdrafts import Drafts
from .cgmap import decode_token, error_messages
from .cgviews import git_entry, hpc_entry, maintainer_entry

log = logging.getLogger("hpcbridge.server")
JOB_ID = re.compile(r"[0-9a-f]{32}")


class CGBody(BaseModel):
    """Every authenticated CyberGIS request: the token travels in the JSON body."""

    model_config = ConfigDict(extra="ignore")
    jupyterhubApiToken: str | None = None


@dataclass(frozen=True)
class Caller:
    user: User
    host: str

    @property
    def user_id(self) -> str:
        """CyberGIS's username: name@hub host."""
        return f"{self.user.name}@{self.host}"


class CGHandler(APIHandler):
    """JSON in and out as CyberGIS-Compute answers it. The body (bounded like every route's)
    is read before the caller is known, since the token is in it; any error is
    `{"error": code, "message", "messages": [...]}` — the client shows `error` + `messages`."""

    auth_required = False  # the base class's header token: ours is in the body
    compat: Any = None

    def initialize(self, compat):
        self.compat = compat

    async def caller(self, model: type[CGBody] = CGBody) -> tuple[Caller, CGBody]:
        body = self.body(model)
        host, token = decode_token(body.jupyterhubApiToken)
        if host not in self.compat.allowed_hosts(self.ctx):
            raise E.Forbidden(f"JupyterHub {host} is not allowed on this server; allowed: "
                              f"{', '.join(self.compat.allowed_hosts(self.ctx)) or 'none'}")
        user = await self.ctx.authenticator.authenticate(token)
        return Caller(user, host), body

    def drafts(self, caller: Caller) -> Drafts:
        return Drafts(self.ctx.queue.redis, self.ctx.site.queue_prefix, caller.user.name,
                      self.compat.draft_ttl)

    def own_stored_job(self, caller: Caller, job_id: str):
        """The caller's submitted job; another user's id is not found (never data)."""
        job = self.ctx.store.get_job(job_id, user=caller.user.name) \
            if JOB_ID.fullmatch(job_id) else None
        if job is None:
            raise E.NotFound(f"no job {job_id}")
        return job

    def send(self, value, status: int = 200):
        """Plain JSON (CyberGIS's objects are dicts and lists of dicts and strings)."""
        self.set_status(status)
        self.finish(json.dumps(value))

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        status_code, body = error_of(exc, status_code, self._reason)
        details = [d.model_dump() for d in body.details] if body.details else None
        messages = error_messages(details) or [body.message]
        data = {"error": body.error, "message": messages[0] if details else body.message,
                "messages": messages}
        if body.error_id:
            data["error_id"] = body.error_id
        if not self.body_read():
            self.set_header("Connection", "close")
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))


# --- the site: no token needed (the client asks without one) ------------------------------
class HPCHandler(CGHandler):
    def get(self):
        self.send({"hpc": {h.id: hpc_entry(h) for h in self.ctx.hpcs.values()}})


class GitHandler(CGHandler):
    def get(self):
        out = {}
        for app in self.ctx.store.list_apps():
            try:
                out[app.id] = git_entry(app_info(app, self.ctx.hpcs), app)
            except ManifestError as exc:  # one broken manifest does not hide the others
                log.warning("app %s left out of /git: %s", app.id, exc.message)
        self.send({"git": out})


class MaintainerHandler(CGHandler):
    def get(self):
        hpcs = list(self.ctx.hpcs.values())
        self.send({"maintainer": maintainer_entry([h.id for h in hpcs],
                                                  sum(h.capacity for h in hpcs))})


class ContainerHandler(CGHandler):
    def get(self):
        self.send({"container": {}})  # apps name their own environment in their manifest


class AllowlistHandler(CGHandler):
    def get(self):
        key = "allowlist" if self.request.path.endswith("allowlist") else "whitelist"
        self.send({key: {h: "JupyterHub" for h in self.compat.allowed_hosts(self.ctx)}})


class AnnouncementHandler(CGHandler):
    def get(self):
        self.send({"announcements": list(self.compat.announcements)})


# --- the caller -----------------------------------------------------------------------------
class UserHandler(CGHandler):
    async def get(self):
        caller, _ = await self.caller()
        self.send({"username": caller.user_id})


class UserGlobusHandler(CGHandler):
    """The client's job form asks this before every submission: an answer without Globus
    (not an error) keeps the form working; data comes as an hpcbridge upload."""

    async def get(self):
        await self.caller()
        self.send({"endpoint": None, "root_path": None, "container_home_path": None,
                   "message": "Globus is not used by hpcbridge: upload data with POST "
                              f"{self.ctx.api_prefix}uploads"})


class SlurmUsageHandler(CGHandler):
    async def get(self):
        caller, _ = await self.caller()
        jobs, _ = self.ctx.store.list_jobs(user=caller.user.name, status=list(FINAL),
                                           limit=self.compat.max_jobs_listed)
        kb = sum(int((j.resources or {}).get("memory") or 0) for j in jobs) * 1024
        usage = {"nodes": len(jobs),
                 "cpus": sum(j.cpus or (j.resources or {}).get("cpus") or 1 for j in jobs),
                 "cpuTime": sum(j.charged_seconds or 0 for j in jobs), "memory": kb,
                 "memoryUsage": 0, "walltime": sum(j.elapsed_seconds or 0 for j in jobs)}
        if self.get_query_argument("format", "").lower() == "true":
            usage.update(cpuTime=_duration(usage["cpuTime"]), walltime=_duration(
                usage["walltime"]), memory=f"{kb / 1024:.0f} MB", memoryUsage="0 MB")
        self.send(usage)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 86400} days, {seconds % 86400 // 3600:02d}:" \
           f"{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
