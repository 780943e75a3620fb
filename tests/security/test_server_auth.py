"""The middleware's auth means what the hub means (issue 20), on the real stack: a
middleware process with hub auth (tests/services.py), users and tokens made through the
hub's REST API.

- users named with '#', '?', a space and non-ASCII each see only their own jobs, and
  `admin#…` is no admin;
- a token without the scope that grants access to the service is refused (403), one with
  only that scope works;
- a token revoked while its event stream is open ends the stream within the TTL;
- event streams per user are bounded (the 9th is 429).
"""
from __future__ import annotations

import threading
import time

import httpx
import pytest
from conftest import SECURITY_TTL

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def submit(client: httpx.Client) -> dict:
    r = client.post("jobs", json={"app": "hello", "params": {"lines": 1, "delay": 0}})
    assert r.status_code == 201, r.text
    return r.json()


def assert_error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    assert r.json()["error"] == code, r.json()
    return r.json()


def test_users_with_hostile_names_are_themselves_and_see_only_their_own(bridge, odd_users,
                                                                         hub):
    jobs = {}
    for name, token in odd_users.items():
        with bridge.client(token) as c:
            me = c.get("me")
            assert me.status_code == 200, me.text
            assert me.json()["name"] == name and me.json()["admin"] is False, me.json()
            jobs[name] = submit(c)["id"]
            assert c.get(f"jobs/{jobs[name]}").json()["user"] == name
    for name, token in odd_users.items():
        with bridge.client(token) as c:
            listed = {j["id"] for j in c.get("jobs", params={"limit": 200}).json()["jobs"]}
            assert listed == {jobs[name]}, (name, listed)
            for other, job_id in jobs.items():
                if other != name:
                    assert_error(c.get(f"jobs/{job_id}"), 404, "not_found")
                    assert_error(c.post(f"jobs/{job_id}/cancel"), 404, "not_found")
            # everybody's jobs are for admins only: `admin#…` is not one
            assert_error(c.get("admin/jobs"), 403, "forbidden")
            mine = {j["id"] for j in c.get("jobs", params={"all": "1"}).json()["jobs"]}
            assert mine == {jobs[name]}
    with bridge.client(hub.tokens["admin"]) as admin:
        everyone = {j["user"] for j in admin.get("admin/jobs", params={"limit": 200})
                    .json()["jobs"]}
        assert set(odd_users) <= everyone


@pytest.mark.parametrize("scopes", [[], ["read:users:name!user"], ["read:users!user",
                                    "access:servers!user"],
                                    ["users:activity!user"]])
def test_a_token_without_the_access_scope_is_403(bridge, odd_users, hub_users, scopes):
    name = next(iter(odd_users))
    token, _ = hub_users.token(name, scopes)
    assert httpx.get(f"{hub_users.hub.api_url}/user", timeout=30,
                     headers={"Authorization": f"token {token}"}).status_code == 200
    with bridge.client(token) as c:
        for r in (c.get("me"), c.get("jobs"), c.post("jobs", json={"app": "hello"}),
                  c.get("events/stream")):
            body = assert_error(r, 403, "forbidden")
            assert "access:services!service=hpcbridge" in body["message"], body


def test_a_token_with_only_the_access_scope_works(bridge, odd_users, hub_users):
    name = next(iter(odd_users))
    token, _ = hub_users.token(name, ["access:services!service=hpcbridge"])
    with bridge.client(token) as c:
        assert c.get("me").json()["name"] == name


def _read_stream(bridge, token: str, out: dict) -> None:
    """Read an event stream until it ends; record when, and what it said last."""
    try:
        with httpx.stream("GET", f"{bridge.api}/events/stream", timeout=60,
                          headers={"Authorization": f"token {token}"}) as r:
            out["status"] = r.status_code
            out["opened"] = time.monotonic()
            for line in r.iter_lines():
                out.setdefault("lines", []).append(line)
    except httpx.HTTPError as exc:
        out["error"] = repr(exc)
    out["ended"] = time.monotonic()


def test_a_revoked_token_ends_its_open_event_stream_within_the_ttl(bridge, odd_users,
                                                                   hub_users):
    name = list(odd_users)[1]
    token, token_id = hub_users.token(name)
    out: dict = {}
    reader = threading.Thread(target=_read_stream, args=(bridge, token, out), daemon=True)
    reader.start()
    deadline = time.monotonic() + 15
    while "opened" not in out and time.monotonic() < deadline:
        time.sleep(0.05)
    assert out.get("status") == 200, out
    time.sleep(SECURITY_TTL + 1)  # past one TTL: the stream has checked its token again
    assert "ended" not in out, out
    hub_users.revoke(name, token_id)
    revoked = time.monotonic()
    reader.join(SECURITY_TTL + 5)
    assert "ended" in out, "the stream still serves a revoked token"
    took = out["ended"] - revoked
    # the cache trusts the token for at most one TTL, the stream looks every sse_interval
    assert took <= SECURITY_TTL + 1.5, took
    assert any('"unauthorized"' in line for line in out.get("lines", [])), out
    print(f"stream ended {took:.2f} s after the revocation (TTL {SECURITY_TTL} s)")


def test_event_streams_per_user_are_bounded(bridge, odd_users):
    name, token = list(odd_users.items())[2]
    streams = []
    try:
        for _ in range(8):
            client = httpx.Client(timeout=30, headers={"Authorization": f"token {token}"})
            r = client.send(client.build_request("GET", f"{bridge.api}/events/stream"),
                            stream=True)
            assert r.status_code == 200
            streams.append((client, r))
        with bridge.client(token) as c:
            body = assert_error(c.get("events/stream"), 429, "too_many_requests")
            assert "at most 8" in body["message"]
        other = list(odd_users.values())[3]  # another user is not affected
        with httpx.stream("GET", f"{bridge.api}/events/stream", timeout=30,
                          headers={"Authorization": f"token {other}"}) as r:
            assert r.status_code == 200
    finally:
        for client, r in streams:
            r.close()
            client.close()
    # closed streams give their slots back
    deadline = time.monotonic() + 10
    while True:
        with httpx.stream("GET", f"{bridge.api}/events/stream", timeout=30,
                          headers={"Authorization": f"token {token}"}) as r:
            if r.status_code == 200:
                break
        assert time.monotonic() < deadline, "slots not given back after the streams closed"
        time.sleep(0.2)
