"""The token cache of server/auth.py with a fake identity source: TTL, size bound,
single flight, failures, the switch that turns it off, and what is kept in memory."""
from __future__ import annotations

import asyncio
import hashlib

import pytest
from traitlets.config import Config

from hpcbridge.server.auth import (
    Authenticator,
    HubAuthenticator,
    StaticTokenAuthenticator,
    User,
    token_from_header,
)
from hpcbridge.server.errors import Forbidden, Unauthorized, Unavailable

ACCESS = "access:services!service=hpcbridge"


class FakeSource(Authenticator):
    """Answers from a dict after `delay` seconds; counts and records its calls."""

    def __init__(self, users=None, delay=0.0, **kwargs):
        super().__init__(**kwargs)
        self.users = dict(users or {})
        self.delay = delay
        self.calls: list[str] = []
        self.fail_with: Exception | None = None

    async def lookup(self, token):
        self.calls.append(token)
        await asyncio.sleep(self.delay)
        if self.fail_with is not None:
            raise self.fail_with
        name = self.users.get(token)
        return None if name is None else User(name, self._is_admin(name, False, ()))


async def test_a_cached_token_is_not_looked_up_again_within_the_ttl():
    auth = FakeSource({"t": "alice"}, cache_ttl=60)
    for _ in range(20):
        assert (await auth.authenticate("t")).name == "alice"
    assert auth.calls == ["t"] and auth.lookups == 1


async def test_after_the_ttl_the_source_is_asked_again_and_revocation_shows():
    auth = FakeSource({"t": "alice"}, cache_ttl=0.2)
    assert (await auth.authenticate("t")).name == "alice"
    del auth.users["t"]  # revoked at the source
    assert (await auth.authenticate("t")).name == "alice"  # still trusted within the TTL
    assert auth.lookups == 1
    await asyncio.sleep(0.25)
    with pytest.raises(Unauthorized):
        await auth.authenticate("t")
    assert auth.lookups == 2


async def test_unknown_tokens_are_cached_too_so_garbage_does_not_hammer_the_source():
    auth = FakeSource({}, cache_ttl=60)
    for _ in range(5):
        with pytest.raises(Unauthorized) as info:
            await auth.authenticate("bogus")
        assert info.value.status == 401
    assert auth.lookups == 1


async def test_single_flight_many_concurrent_first_requests_share_one_lookup():
    auth = FakeSource({"t": "alice", "u": "bob"}, delay=0.05)
    users = await asyncio.gather(*(auth.authenticate(t) for t in ["t", "u"] * 100))
    assert [u.name for u in users] == ["alice", "bob"] * 100
    assert sorted(auth.calls) == ["t", "u"] and auth.lookups == 2
    assert not auth._inflight  # nothing left behind


async def test_single_flight_failure_reaches_every_waiter_and_is_not_cached():
    auth = FakeSource({"t": "alice"}, delay=0.05)
    auth.fail_with = Unavailable("hub down")
    results = await asyncio.gather(*(auth.authenticate("t") for _ in range(50)),
                                   return_exceptions=True)
    assert all(isinstance(r, Unavailable) for r in results)
    assert auth.lookups == 1
    auth.fail_with = None  # the hub is back: the next request asks again and succeeds
    assert (await auth.authenticate("t")).name == "alice"
    assert auth.lookups == 2


async def test_a_caller_that_goes_away_does_not_fail_the_others():
    auth = FakeSource({"t": "alice"}, delay=0.1)
    first = asyncio.ensure_future(auth.authenticate("t"))
    await asyncio.sleep(0.01)  # the first caller started the lookup
    others = [asyncio.ensure_future(auth.authenticate("t")) for _ in range(10)]
    await asyncio.sleep(0.01)
    first.cancel()  # e.g. its client disconnected
    users = await asyncio.gather(*others)
    assert {u.name for u in users} == {"alice"} and auth.lookups == 1
    assert (await auth.authenticate("t")).name == "alice" and auth.lookups == 1  # cached


async def test_the_cache_is_bounded_and_evicts_the_least_recently_used():
    users = {f"t{i}": f"u{i}" for i in range(10)}
    auth = FakeSource(users, cache_size=3)
    for t in ["t0", "t1", "t2"]:
        await auth.authenticate(t)
    await auth.authenticate("t0")   # t0 is now the most recent
    await auth.authenticate("t3")   # evicts t1, the least recently used
    assert len(auth._cache) == 3 and auth.lookups == 4
    await auth.authenticate("t0")
    await auth.authenticate("t2")
    assert auth.lookups == 4        # both still cached
    await auth.authenticate("t1")
    assert auth.lookups == 5        # t1 had to be asked again
    for t in users:
        await auth.authenticate(t)
    assert len(auth._cache) == 3


async def test_the_cache_keeps_hashes_never_tokens():
    auth = FakeSource({"secret-token-value": "alice"})
    await auth.authenticate("secret-token-value")
    assert list(auth._cache) == [hashlib.sha256(b"secret-token-value").hexdigest()]
    assert "secret-token-value" not in repr(auth._cache)


async def test_cache_disabled_asks_every_time_even_concurrently():
    auth = FakeSource({"t": "alice"}, cache_enabled=False, delay=0.01)
    for _ in range(5):
        await auth.authenticate("t")
    await asyncio.gather(*(auth.authenticate("t") for _ in range(10)))
    assert auth.lookups == 15 and len(auth.calls) == 15
    assert not auth._cache


async def test_missing_token_is_401_without_a_lookup():
    auth = FakeSource({"t": "alice"})
    for token in (None, ""):
        with pytest.raises(Unauthorized) as info:
            await auth.authenticate(token)
        assert "missing token" in info.value.message
    assert auth.lookups == 0


def test_settings_come_from_traitlets_config():
    config = Config()
    config.Authenticator.cache_ttl = 2.0
    config.Authenticator.cache_size = 7
    config.HubAuthenticator.hub_api_url = "http://hub/hub/api"
    auth = HubAuthenticator(config=config)
    assert (auth.cache_ttl, auth.cache_size, auth.cache_enabled) == (2.0, 7, True)
    assert auth._api() == "http://hub/hub/api"


@pytest.mark.parametrize("header, token", [
    ("token abc", "abc"), ("Bearer abc", "abc"), ("TOKEN  abc ", "abc"),
    ("Basic abc", None), ("token", None), ("token   ", None), ("", None), (None, None),
])
def test_token_from_header(header, token):
    assert token_from_header(header) == token


async def test_static_tokens_and_admin_rules():
    auth = StaticTokenAuthenticator(tokens={"a": "alice", "r": "root"}, admin_users={"root"})
    assert await auth.authenticate("a") == User("alice", False)
    assert (await auth.authenticate("r")).admin is True
    with pytest.raises(Unauthorized):
        await auth.authenticate("nope")
    groups = FakeSource(admin_groups={"ops"})
    assert groups._is_admin("x", False, ["ops", "y"]) and not groups._is_admin("x", False, [])


# --- HubAuthenticator against a small fake hub -----------------------------------------
class FakeHub:
    """`GET /hub/api/user` and `/hub/api/users/{name}` answered from a dict of tokens."""

    def __init__(self):
        from tornado.web import Application, RequestHandler

        hub = self
        self.users: dict[str, dict] = {}   # token -> model of /user
        self.full: dict[str, dict] = {}    # name -> model of /users/{name}
        self.service_token = "service-secret"
        self.status: int | None = None     # force a status
        self.body: bytes | None = None     # force a body
        self.requests: list[str] = []
        self.raw_paths: list[str] = []

        class Handler(RequestHandler):
            def get(self, path):
                hub.requests.append(path)
                hub.raw_paths.append(self.request.path)
                if hub.status:
                    self.set_status(hub.status)
                if hub.body is not None:
                    return self.finish(hub.body)
                token = self.request.headers.get("Authorization", "").partition(" ")[2]
                if path == "user" and token in hub.users:
                    return self.finish(hub.users[token])
                name = path.removeprefix("users/")
                if token == hub.service_token and name in hub.full:
                    return self.finish(hub.full[name])
                self.set_status(403)
                self.finish({"status": 403, "message": None})

        self.app = Application([(r"/hub/api/(.*)", Handler)])

    async def __aenter__(self):
        from tornado.httpserver import HTTPServer
        from tornado.netutil import bind_sockets
        sockets = bind_sockets(0, "127.0.0.1")
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/hub/api"
        self.server = HTTPServer(self.app)
        self.server.add_sockets(sockets)
        return self

    async def __aexit__(self, *exc):
        self.server.stop()


async def test_hub_lookup_reads_name_admin_and_groups():
    async with FakeHub() as hub:
        hub.users["t"] = {"kind": "user", "name": "alice", "admin": False, "groups": ["ops"],
                          "scopes": [ACCESS]}
        hub.users["a"] = {"kind": "user", "name": "root", "admin": True, "groups": [],
                          "scopes": ["access:services"]}
        auth = HubAuthenticator(hub_api_url=hub.url, admin_groups={"ops"})
        assert await auth.authenticate("t") == User("alice", True, frozenset({"ops"}))
        assert (await auth.authenticate("a")).admin is True
        with pytest.raises(Unauthorized):
            await auth.authenticate("unknown")  # the hub says 403


async def test_hub_lookup_asks_for_admin_and_groups_with_the_service_token_when_hidden():
    async with FakeHub() as hub:
        # a token without read:users scope
        hub.users["t"] = {"kind": "user", "name": "bob", "scopes": [ACCESS]}
        hub.full["bob"] = {"name": "bob", "admin": True, "groups": ["x"]}
        auth = HubAuthenticator(hub_api_url=hub.url, service_token=hub.service_token)
        assert await auth.authenticate("t") == User("bob", True, frozenset({"x"}))
        assert hub.requests == ["user", "users/bob"]


async def test_service_tokens_are_not_users():
    async with FakeHub() as hub:
        hub.users["s"] = {"kind": "service", "name": "hpcbridge"}
        with pytest.raises(Unauthorized):
            await HubAuthenticator(hub_api_url=hub.url).authenticate("s")


@pytest.mark.parametrize("status, body", [(500, b"oops"), (200, b"<html>login</html>"),
                                          (200, b"[1, 2]"), (502, None)])
async def test_a_broken_hub_is_503_and_not_cached(status, body):
    async with FakeHub() as hub:
        hub.users["t"] = {"kind": "user", "name": "alice", "admin": False, "groups": [],
                          "scopes": [ACCESS]}
        hub.status, hub.body = status, body
        auth = HubAuthenticator(hub_api_url=hub.url)
        with pytest.raises(Unavailable) as info:
            await auth.authenticate("t")
        assert info.value.status == 503
        hub.status = hub.body = None  # the hub recovers: asked again at once
        assert (await auth.authenticate("t")).name == "alice"
        assert auth.lookups == 2


async def test_an_unreachable_hub_is_503():
    from tornado.netutil import bind_sockets
    sock = bind_sockets(0, "127.0.0.1")[0]
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    auth = HubAuthenticator(hub_api_url=f"http://127.0.0.1:{port}/hub/api", request_timeout=5)
    with pytest.raises(Unavailable) as info:
        await auth.authenticate("t")
    assert "cannot reach JupyterHub" in info.value.message


async def test_no_hub_url_configured_is_503(monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_API_URL", raising=False)
    with pytest.raises(Unavailable) as info:
        await HubAuthenticator().authenticate("t")
    assert "hub_api_url" in info.value.message


# --- issue 20: what the hub means --------------------------------------------------------
async def test_a_user_named_like_a_url_is_looked_up_quoted_and_never_as_another():
    """`admin#x` must be asked about as itself: unquoted, '#' cut the path to /users/admin
    and `admin#x` was given admin's flag (old hubs leave `admin` out of /user)."""
    async with FakeHub() as hub:
        for token, name in [("t1", "admin#x"), ("t2", "alice?y"), ("t3", "carol d"),
                            ("t4", "ünï/../admin")]:
            hub.users[token] = {"kind": "user", "name": name, "scopes": [ACCESS]}
            hub.full[name] = {"name": name, "admin": False, "groups": []}
        hub.full["admin"] = {"name": "admin", "admin": True, "groups": ["ops"]}
        auth = HubAuthenticator(hub_api_url=hub.url, service_token=hub.service_token,
                                admin_groups={"ops"})
        for token, name in [("t1", "admin#x"), ("t2", "alice?y"), ("t3", "carol d"),
                            ("t4", "ünï/../admin")]:
            assert await auth.authenticate(token) == User(name, False, frozenset())
        assert "/hub/api/users/admin%23x" in hub.raw_paths
        assert "/hub/api/users/alice%3Fy" in hub.raw_paths
        assert "/hub/api/users/carol%20d" in hub.raw_paths
        assert "/hub/api/users/%C3%BCn%C3%AF%2F..%2Fadmin" in hub.raw_paths
        assert "/hub/api/users/admin" not in hub.raw_paths


@pytest.mark.parametrize("scopes, ok", [
    ([ACCESS], True), (["access:services"], True),
    (["access:services!service=other"], False), (["read:users!user=alice"], False),
    ([], False), (None, False)])
async def test_only_a_token_with_the_access_scope_is_accepted(scopes, ok):
    async with FakeHub() as hub:
        model = {"kind": "user", "name": "alice", "admin": False, "groups": []}
        if scopes is not None:
            model["scopes"] = scopes
        hub.users["t"] = model
        auth = HubAuthenticator(hub_api_url=hub.url)
        if ok:
            assert (await auth.authenticate("t")).name == "alice"
            return
        with pytest.raises(Forbidden) as info:
            await auth.authenticate("t")
        assert info.value.status == 403
        assert "access:services!service=hpcbridge" in info.value.message or \
            "scopes" in info.value.message


async def test_a_site_scope_and_the_service_name_are_configurable():
    async with FakeHub() as hub:
        hub.users["t"] = {"kind": "user", "name": "a", "admin": False, "groups": [],
                          "scopes": ["custom:hpc"]}
        hub.users["u"] = {"kind": "user", "name": "b", "admin": False, "groups": [],
                          "scopes": ["access:services!service=bridge2"]}
        assert (await HubAuthenticator(hub_api_url=hub.url, access_scopes=["custom:hpc"])
                .authenticate("t")).name == "a"
        assert (await HubAuthenticator(hub_api_url=hub.url, service_name="bridge2")
                .authenticate("u")).name == "b"
        with pytest.raises(Forbidden):
            await HubAuthenticator(hub_api_url=hub.url).authenticate("t")
        old = HubAuthenticator(hub_api_url=hub.url, require_access_scope=False)
        hub.users["v"] = {"kind": "user", "name": "c", "admin": False, "groups": []}
        assert (await old.authenticate("v")).name == "c"


async def test_refusals_are_cached_only_briefly():
    auth = FakeSource({}, cache_ttl=60, negative_cache_ttl=0.2)
    for _ in range(5):
        with pytest.raises(Unauthorized):
            await auth.authenticate("later")
    assert auth.lookups == 1
    auth.users["later"] = "alice"  # the hub knows the token now
    await asyncio.sleep(0.25)
    assert (await auth.authenticate("later")).name == "alice"
    assert auth.lookups == 2


async def test_a_scope_refusal_is_403_cached_briefly_too():
    async with FakeHub() as hub:
        hub.users["t"] = {"kind": "user", "name": "alice", "scopes": []}
        auth = HubAuthenticator(hub_api_url=hub.url, negative_cache_ttl=0.2)
        for _ in range(3):
            with pytest.raises(Forbidden):
                await auth.authenticate("t")
        assert auth.lookups == 1
        hub.users["t"]["scopes"] = [ACCESS]  # granted
        await asyncio.sleep(0.25)
        assert (await auth.authenticate("t")).name == "alice"
