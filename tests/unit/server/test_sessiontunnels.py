"""Pieces of the session proxy that stand alone: the kept forwarded connections
(server/sessiontunnels.py IdleTunnels: bounded per session, expired, never a closed one
handed out) and the caller's API prefix a session's base URL is built from."""
from __future__ import annotations

import pytest
from tornado.httputil import HTTPHeaders

from hpcbridge.server import errors as E
from hpcbridge.server.handlers.sessions import caller_prefix, proxy_path
from hpcbridge.server.sessiontunnels import IdleTunnels


class FakeTunnel:
    def __init__(self, eof=False):
        self.closed, self.eof = False, eof
        self.reader = self

    def at_eof(self):
        return self.eof

    def close(self):
        self.closed = True


def test_kept_tunnels_are_bounded_per_session_and_handed_out_newest_first():
    idle = IdleTunnels(per_session=2, seconds=60)
    a, b, c = FakeTunnel(), FakeTunnel(), FakeTunnel()
    for t in (a, b, c):
        idle.give("s1", t)
    assert c.closed and not a.closed and not b.closed  # the third is one too many
    assert idle.take("s1") is b and idle.take("s1") is a and idle.take("s1") is None
    assert idle.take("other") is None


def test_a_tunnel_the_service_closed_is_never_handed_out():
    idle = IdleTunnels(per_session=4, seconds=60)
    dead, alive = FakeTunnel(eof=True), FakeTunnel()
    idle.give("s1", alive)
    idle.give("s1", dead)
    assert idle.take("s1") is alive and dead.closed


def test_kept_tunnels_expire(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("hpcbridge.server.sessiontunnels.time.monotonic", lambda: now[0])
    idle = IdleTunnels(per_session=4, seconds=15)
    old = FakeTunnel()
    idle.give("s1", old)
    now[0] += 16
    idle.give("s2", FakeTunnel())  # any use sweeps every session
    assert old.closed and "s1" not in idle.idle
    assert idle.take("s1") is None


@pytest.mark.parametrize("header, prefix", [
    (None, "/api/v1"),
    ("/user/alice/hpcbridge/api", "/user/alice/hpcbridge/api"),
    ("/user/alice%40x.org/hpcbridge/api/", "/user/alice%40x.org/hpcbridge/api"),
])
def test_the_callers_prefix(header, prefix):
    headers = HTTPHeaders({"X-HPCBridge-API-Prefix": header} if header else {})
    assert caller_prefix(headers, "/api/v1/") == prefix
    assert proxy_path(prefix, "ab") == f"{prefix}/sessions/ab/proxy/"


@pytest.mark.parametrize("header", [
    "relative/path", "/a/../b", "/a/b?x=1", "/a b", "/a/%2e%2e/b", "/a%2fb", "//evil.org/x",
    "/a\\b", "/a/<script>", "/" + "a" * 600, "/a/./b/..",
])
def test_an_unsafe_prefix_is_refused(header):
    with pytest.raises(E.ValidationFailed):
        caller_prefix(HTTPHeaders({"X-HPCBridge-API-Prefix": header}), "/api/v1/")
