"""Who is calling: a JupyterHub token becomes a user, with a short cache.

As JupyterHub's HubAuthenticator does: tokens are cached by their hash (sha256, never the
token) with a TTL and a size bound, and concurrent first requests with one token share a
single hub round-trip. A refusal (unknown token, or one without the scope that grants
access to this service) is cached only briefly, so a token the hub grants later works soon.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import urllib.parse
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Bool, Dict, Float, Int, List, Set, Unicode, default
from traitlets.config import LoggingConfigurable

from .errors import Forbidden, Unauthorized, Unavailable


@dataclass(frozen=True)
class User:
    name: str
    admin: bool = False
    groups: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Denied:
    """A token the identity source knows but that may not use this service (403)."""

    message: str


def token_from_header(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    return None


class Authenticator(LoggingConfigurable):
    """Turns a token into a User (or raises Unauthorized / Forbidden). Swap by config."""

    cache_ttl = Float(60.0, help="Seconds a validated token is trusted before asking again "
                                 "(also how long an open event stream may outlive its "
                                 "token's revocation).").tag(config=True)
    negative_cache_ttl = Float(5.0, help="Seconds a refused token (unknown, or without the "
                                         "access scope) is remembered: a few, so garbage "
                                         "does not hammer the hub and a token granted "
                                         "access later works soon.").tag(config=True)
    cache_size = Int(10000, help="Most tokens kept in the cache.").tag(config=True)
    cache_enabled = Bool(True, help="Turn the token cache (and the sharing of concurrent "
                                    "lookups) off: every request asks the identity source. "
                                    "For benchmarks.").tag(config=True)
    admin_users = Set(Unicode(), help="Extra admin user names.").tag(config=True)
    admin_groups = Set(Unicode(), help="Members of these hub groups are admins."
                       ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._cache: OrderedDict[str, tuple[float, User | Denied | None]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future] = {}
        self.lookups = 0  # how many times the identity source was asked
        # for /metrics (server/metrics.py): lookups by result, requests by cache outcome
        self.lookup_results: Counter[str] = Counter()
        self.cache_results: Counter[str] = Counter()

    async def lookup(self, token: str) -> User | Denied | None:
        """Ask the identity source; None for an unknown token, Denied for a token that
        may not use this service."""
        raise NotImplementedError

    def _is_admin(self, name: str, admin: bool, groups) -> bool:
        return admin or name in self.admin_users or bool(set(groups) & self.admin_groups)

    async def authenticate(self, token: str | None) -> User:
        if not token:
            raise Unauthorized("missing token: send 'Authorization: token <JupyterHub token>'")
        key = hashlib.sha256(token.encode()).hexdigest()
        if not self.cache_enabled:  # the baseline: one identity lookup per request
            self.lookups += 1
            user = await self._counted_lookup(token)
        elif (cached := self._cache.get(key)) and cached[0] > time.monotonic():
            self._cache.move_to_end(key)
            self.cache_results["hit"] += 1
            user = cached[1]
        else:
            future = self._inflight.get(key)
            self.cache_results["shared" if future is not None else "miss"] += 1
            if future is None:  # single flight: one lookup per token, every caller awaits it
                future = asyncio.ensure_future(self._lookup(key, token))
                self._inflight[key] = future
                future.add_done_callback(lambda f: self._lookup_done(key, f))
            # shielded: a caller that goes away does not cancel the others' lookup
            user = await asyncio.shield(future)
        if user is None:
            raise Unauthorized("invalid or expired token")
        if isinstance(user, Denied):
            raise Forbidden(user.message)
        return user

    async def _lookup(self, key: str, token: str) -> User | Denied | None:
        started = time.monotonic()
        self.lookups += 1
        user = await self._counted_lookup(token)
        # trusted for cache_ttl from when the hub was asked; a refusal only briefly
        ttl = self.cache_ttl if isinstance(user, User) else \
            min(self.negative_cache_ttl, self.cache_ttl)
        self._cache[key] = (started + ttl, user)
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return user

    async def _counted_lookup(self, token: str) -> User | Denied | None:
        try:
            user = await self.lookup(token)
        except Exception:
            self.lookup_results["error"] += 1
            raise
        self.lookup_results["user" if isinstance(user, User) else
                            "denied" if isinstance(user, Denied) else "unknown"] += 1
        return user

    def _lookup_done(self, key: str, future: asyncio.Future) -> None:
        if self._inflight.get(key) is future:
            del self._inflight[key]
        if not future.cancelled():
            future.exception()  # retrieved: a failure is re-raised to every waiter


class HubAuthenticator(Authenticator):
    """Validates tokens with JupyterHub's `GET /hub/api/user`: the token must belong to a
    user and carry a scope that grants access to this service."""

    hub_api_url = Unicode(help="JupyterHub API URL, e.g. http://127.0.0.1:8081/hub/api. "
                               "Default: $JUPYTERHUB_API_URL.").tag(config=True)
    service_token = Unicode(help="This service's own hub token, used to read a user's admin "
                                 "flag and groups when the user's token may not. Default: "
                                 "$JUPYTERHUB_API_TOKEN.").tag(config=True)
    request_timeout = Float(10.0, help="Seconds to wait for the hub.").tag(config=True)
    service_name = Unicode(help="This service's name in the hub: tokens need the scope "
                                "access:services!service=<name> (or access:services). "
                                "Default: $JUPYTERHUB_SERVICE_NAME, else hpcbridge."
                           ).tag(config=True)

    @default("service_name")
    def _service_name(self):
        return os.environ.get("JUPYTERHUB_SERVICE_NAME") or "hpcbridge"

    access_scopes = List(Unicode(), help="Scopes any one of which lets a token use this "
                                         "service. Default: access:services!service=<"
                                         "service_name> and access:services.").tag(config=True)

    @default("access_scopes")
    def _access_scopes(self):
        return [f"access:services!service={self.service_name}", "access:services"]

    require_access_scope = Bool(True, help="Refuse tokens without one of access_scopes. "
                                           "Only for a hub too old to report a token's "
                                           "scopes (JupyterHub < 2).").tag(config=True)

    def _env(self, name):
        return os.environ.get(name, "")

    def _api(self) -> str:
        url = self.hub_api_url or self._env("JUPYTERHUB_API_URL")
        if not url:
            raise Unavailable("no JupyterHub API URL configured (HubAuthenticator.hub_api_url)")
        return url.rstrip("/")

    async def _get(self, path: str, token: str) -> dict | None:
        request = HTTPRequest(f"{self._api()}{path}", headers={
            "Authorization": f"token {token}"}, request_timeout=self.request_timeout)
        try:
            response = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as exc:
            if exc.code in (401, 403, 404):
                return None
            raise Unavailable(f"JupyterHub answered {exc.code}") from None
        except OSError as exc:
            raise Unavailable(f"cannot reach JupyterHub: {exc}") from None
        try:
            model = json.loads(response.body)
        except ValueError:
            model = None
        if not isinstance(model, dict):
            raise Unavailable(f"JupyterHub answered {path} with something that is not a "
                              "JSON object: is hub_api_url right?")
        return model

    def access_denied(self, model: dict) -> Denied | None:
        """Why this token may not use the service, or None when it may."""
        if not self.require_access_scope:
            return None
        scopes = model.get("scopes")
        if not isinstance(scopes, list):
            return Denied("JupyterHub did not say what this token may do (no 'scopes' in "
                          "/hub/api/user): refused")
        if set(scopes) & set(self.access_scopes):
            return None
        return Denied(f"this token may not use the {self.service_name} service: it needs "
                      f"the scope {self.access_scopes[0]}; ask for a token with it")

    async def lookup(self, token: str) -> User | Denied | None:
        model = await self._get("/user", token)
        if model is None or model.get("kind", "user") != "user" or \
                not isinstance(model.get("name"), str) or not model["name"]:
            return None
        denied = self.access_denied(model)
        if denied is not None:
            return denied
        name = model["name"]
        admin, groups = model.get("admin"), model.get("groups")
        service_token = self.service_token or self._env("JUPYTERHUB_API_TOKEN")
        if (admin is None or groups is None) and service_token:
            # quoted whole: a name with '#', '?', '/' or spaces must name this user only
            path = f"/users/{urllib.parse.quote(name, safe='')}"
            full = await self._get(path, service_token) or {}
            if full.get("name") == name:
                admin = full.get("admin", admin)
                groups = full.get("groups", groups)
        return User(name, self._is_admin(name, bool(admin), groups or ()),
                    frozenset(groups or ()))


class StaticTokenAuthenticator(Authenticator):
    """A fixed token → user map: standalone mode and the embedded demo."""

    tokens = Dict(help="{token: user name}").tag(config=True)

    async def lookup(self, token: str) -> User | None:
        name = self.tokens.get(token)
        if name is None:
            return None
        return User(name, self._is_admin(name, False, ()))
