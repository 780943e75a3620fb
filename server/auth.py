"""Who is calling: a JupyterHub token becomes a user, with a short cache.

As JupyterHub's HubAuth does: tokens are cached by their hash with a TTL and a size bound,
and concurrent first requests with one token share a single hub round-trip.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Bool, Dict, Float, Int, Set, Unicode
from traitlets.config import LoggingConfigurable

from .errors import Unauthorized, Unavailable


@dataclass(frozen=True)
class User:
    name: str
    admin: bool = False
    groups: frozenset[str] = field(default_factory=frozenset)


def token_from_header(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    return None


class Authenticator(LoggingConfigurable):
    """Turns a token into a User (or raises Unauthorized). Swap by config."""

    cache_ttl = Float(60.0, help="Seconds a validated token is trusted before asking again."
                      ).tag(config=True)
    cache_size = Int(10000, help="Most tokens kept in the cache.").tag(config=True)
    cache_enabled = Bool(True, help="Turn the token cache off (benchmarks only)."
                         ).tag(config=True)
    admin_users = Set(Unicode(), help="Extra admin user names.").tag(config=True)
    admin_groups = Set(Unicode(), help="Members of these hub groups are admins."
                       ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._cache: OrderedDict[str, tuple[float, User | None]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future] = {}
        self.lookups = 0  # how many times the identity source was asked

    async def lookup(self, token: str) -> User | None:
        """Ask the identity source; None for an unknown token."""
        raise NotImplementedError

    def _is_admin(self, name: str, admin: bool, groups) -> bool:
        return admin or name in self.admin_users or bool(set(groups) & self.admin_groups)

    async def authenticate(self, token: str | None) -> User:
        if not token:
            raise Unauthorized("missing token: send 'Authorization: token <JupyterHub token>'")
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(key) if self.cache_enabled else None
        if cached and cached[0] > now:
            self._cache.move_to_end(key)
            user = cached[1]
        else:
            future = self._inflight.get(key)
            if future is None:  # single flight: the first request asks, others wait
                future = asyncio.get_running_loop().create_future()
                self._inflight[key] = future
                try:
                    self.lookups += 1
                    user = await self.lookup(token)
                    future.set_result(user)
                except BaseException as exc:
                    future.set_exception(exc)
                    future.exception()  # mark retrieved
                    raise
                finally:
                    self._inflight.pop(key, None)
                if self.cache_enabled:
                    self._cache[key] = (now + self.cache_ttl, user)
                    while len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
            else:
                user = await asyncio.shield(future)
        if user is None:
            raise Unauthorized("invalid or expired token")
        return user


class HubAuthenticator(Authenticator):
    """Validates tokens with JupyterHub's `GET /hub/api/user`."""

    hub_api_url = Unicode(help="JupyterHub API URL, e.g. http://127.0.0.1:8081/hub/api. "
                               "Default: $JUPYTERHUB_API_URL.").tag(config=True)
    service_token = Unicode(help="This service's own hub token, used to read a user's admin "
                                 "flag and groups when the user's token may not. Default: "
                                 "$JUPYTERHUB_API_TOKEN.").tag(config=True)
    request_timeout = Float(10.0, help="Seconds to wait for the hub.").tag(config=True)

    def _env(self, name):
        import os
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
        return json.loads(response.body)

    async def lookup(self, token: str) -> User | None:
        model = await self._get("/user", token)
        if model is None or model.get("kind", "user") != "user" or not model.get("name"):
            return None
        name = model["name"]
        admin, groups = model.get("admin"), model.get("groups")
        service_token = self.service_token or self._env("JUPYTERHUB_API_TOKEN")
        if (admin is None or groups is None) and service_token:
            full = await self._get(f"/users/{name}", service_token) or {}
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
