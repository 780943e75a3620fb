"""The middleware's REST API end to end: a real middleware and maintainer process
(tests/services.py) with the stack's Redis and JupyterHub, jobs on the local HPC.

Covers: who sees what with real hub tokens (alice, bob, admin), 401s, revocation within the
cache TTL, one hub lookup per token per TTL under 100 concurrent requests (counted by a small
reverse proxy in front of the hub API), the JSON error contract, safe uploads used by a job,
paging and filters, quota and drain.
"""
from __future__ import annotations

import asyncio
import io
import json
import os
import re
import stat
import tarfile
import threading
import time
import uuid
import zipfile

import httpx
import pytest
from services import Services, free_port, local_hpc
from tornado.httpclient import AsyncHTTPClient
from tornado.web import Application, RequestHandler

pytestmark = [pytest.mark.stack, pytest.mark.slow]

TTL = 2.0  # seconds a validated token is trusted (Authenticator.cache_ttl)
HUB_DELAY = 0.3  # the proxy holds each /hub/api/user call this long: requests overlap it
MAX_UPLOAD = 64 * 1024
WAIT = 120


# ============================================================================================
# A counting reverse proxy in front of the hub API
# ============================================================================================
class CountingHubProxy:
    """Forwards /hub/api/* to the real hub and records (path, token) of every call."""

    def __init__(self, target_api: str, delay: float = 0.0):
        self.target = target_api.rstrip("/")
        self.delay = delay
        self.port = free_port()
        self.calls: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hub/api"

    def user_lookups(self, token: str) -> int:
        """How many times the hub was asked who `token` is."""
        with self.lock:
            return sum(1 for path, t in self.calls if path == "/hub/api/user" and t == token)

    def start(self) -> CountingHubProxy:
        ready = threading.Event()

        def run():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)

            async def listen():
                app = Application([(r"/hub/api/(.*)", _Forward, {"proxy": self})])
                self.server = app.listen(self.port, "127.0.0.1")

            self.loop.run_until_complete(listen())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="hub-proxy", daemon=True)
        self.thread.start()
        assert ready.wait(10), "the counting proxy did not start"
        return self

    def stop(self) -> None:
        def shutdown():
            self.server.stop()
            self.loop.stop()
        self.loop.call_soon_threadsafe(shutdown)
        self.thread.join(10)


class _Forward(RequestHandler):
    def initialize(self, proxy: CountingHubProxy):
        self.proxy = proxy

    async def _forward(self, path: str):
        header = self.request.headers.get("Authorization", "")
        token = header.partition(" ")[2] or None
        with self.proxy.lock:
            self.proxy.calls.append((f"/hub/api/{path}", token))
        if path == "user" and self.proxy.delay:
            await asyncio.sleep(self.proxy.delay)
        url = f"{self.proxy.target}/{path}"
        if self.request.query:
            url += "?" + self.request.query
        body = self.request.body if self.request.method in ("POST", "PUT", "PATCH") else None
        response = await AsyncHTTPClient().fetch(
            url, method=self.request.method, headers={"Authorization": header}, body=body,
            raise_error=False, allow_nonstandard_methods=True, request_timeout=30)
        self.set_status(502 if response.code == 599 else response.code)
        if response.headers.get("Content-Type"):
            self.set_header("Content-Type", response.headers["Content-Type"])
        if response.body:
            self.write(response.body)

    get = post = put = patch = delete = _forward


# ============================================================================================
# Fixtures and helpers
# ============================================================================================
@pytest.fixture(scope="module")
def hub_proxy(hub):
    proxy = CountingHubProxy(hub.api_url, delay=HUB_DELAY).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def svc(tmp_path_factory, stack, hub, hub_proxy, redis_url):
    tmp = str(tmp_path_factory.mktemp("api"))
    services = Services(tmp, stack, auth="hub", hpcs=[local_hpc(os.path.join(tmp, "data"))],
                        workers=2, extra_config="\n".join([
                            f"c.Authenticator.cache_ttl = {TTL}",
                            f"c.HubAuthenticator.hub_api_url = {hub_proxy.api_url!r}",
                            f"c.HPCBridgeServer.max_upload_size = {MAX_UPLOAD}",
                        ]))
    services.start()
    yield services
    services.stop()


@pytest.fixture(scope="module")
def http(svc, hub):
    """httpx clients of the middleware for alice, bob, admin, a bogus token and nobody."""
    clients = {who: svc.client(hub.tokens[who]) for who in ("alice", "bob", "admin")}
    clients["bogus"] = svc.client(uuid.uuid4().hex)
    clients["anon"] = httpx.Client(base_url=svc.api + "/", timeout=30)
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture
def hub_token(hub):
    """A fresh hub token of alice, made with the admin's token; revoked afterwards."""
    made = []

    def make(user="alice") -> tuple[str, str]:
        r = httpx.post(f"{hub.api_url}/users/{user}/tokens", headers=hub.headers("admin"),
                       json={"note": "hpcbridge test_api", "expires_in": 600}, timeout=30)
        assert r.status_code in (200, 201), r.text
        made.append((user, r.json()["id"]))
        return r.json()["token"], r.json()["id"]

    yield make
    for user, token_id in made:
        httpx.delete(f"{hub.api_url}/users/{user}/tokens/{token_id}",
                     headers=hub.headers("admin"), timeout=30)


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    """The error contract: that status, JSON {error, message, details}, no traceback."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert {"error", "message", "details"} <= set(body), body
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


def submit(client: httpx.Client, **fields) -> dict:
    body = {"app": "hello", "params": {"lines": 1, "delay": 0}}
    body.update(fields)
    r = client.post("jobs", json=body)
    assert r.status_code == 201, r.text
    assert r.headers["Location"].endswith(f"/api/v1/jobs/{r.json()['id']}")
    return r.json()


def long_job(client: httpx.Client) -> dict:
    return submit(client, params={"lines": 100, "delay": 1})


def server_log(svc: Services) -> str:
    with open(os.path.join(svc.tmp, "server.log"), errors="replace") as f:
        return f.read()


def assert_no_server_errors(svc: Services) -> None:
    bad = [line for line in server_log(svc).splitlines()
           if "ERROR" in line or "Traceback" in line or "unexpected error" in line]
    assert not bad, "\n".join(bad)


def upload_entries(svc: Services) -> set[str]:
    path = os.path.join(svc.data_dir, "uploads")
    return set(os.listdir(path)) if os.path.isdir(path) else set()


# ============================================================================================
# Who may see what
# ============================================================================================
def test_real_hub_tokens_become_users(http):
    assert http["alice"].get("me").json()["name"] == "alice"
    assert http["alice"].get("me").json()["admin"] is False
    me = http["admin"].get("me").json()
    assert me["name"] == "admin" and me["admin"] is True
    assert http["bob"].get("me").json() == {**http["bob"].get("me").json(), "name": "bob"}


@pytest.mark.parametrize("who", ["anon", "bogus"])
@pytest.mark.parametrize("method, path", [("get", "me"), ("get", "jobs"),
                                          ("post", "jobs"), ("get", "admin/jobs"),
                                          ("get", f"jobs/{'a' * 32}"), ("post", "uploads")])
def test_no_token_or_a_bogus_token_is_401(http, who, method, path):
    r = getattr(http[who], method)(path)
    body = assert_error(r, 401, "unauthorized")
    assert ("missing token" in body["message"]) == (who == "anon")


def test_other_schemes_and_query_tokens_are_not_accepted(svc, hub):
    token = hub.tokens["alice"]
    for headers, params in [({"Authorization": f"Basic {token}"}, {}),
                            ({}, {"token": token}),
                            ({"Authorization": "token"}, {})]:
        r = httpx.get(f"{svc.api}/me", headers=headers, params=params, timeout=30)
        assert_error(r, 401, "unauthorized")


def test_alice_cannot_see_bobs_job_admin_can(svc, http):
    bob_job = submit(http["bob"], params={"name": "Bob", "lines": 2, "delay": 0})
    job_id = bob_job["id"]
    done = svc.wait_job(http["bob"], job_id, timeout=WAIT)
    assert done["status"] == "succeeded", done
    unknown = uuid.uuid4().hex
    alice = http["alice"]
    for path in [f"jobs/{job_id}", f"jobs/{job_id}/events", f"jobs/{job_id}/logs",
                 f"jobs/{job_id}/logs?stream=stderr", f"jobs/{job_id}/results",
                 f"jobs/{job_id}/results/result/greeting.txt", f"jobs/{job_id}/results/"]:
        r = alice.get(path)
        body = assert_error(r, 404, "not_found")
        # exactly what a job that does not exist looks like: no existence oracle
        twin = alice.get(path.replace(job_id, unknown)).json()
        assert body == json.loads(json.dumps(twin).replace(unknown, job_id))
        assert "Bob" not in r.text
    assert_error(alice.post(f"jobs/{job_id}/cancel"), 404, "not_found")
    assert_error(alice.post(f"admin/jobs/{job_id}/cancel"), 403, "forbidden")
    assert_error(alice.get("admin/jobs"), 403, "forbidden")
    for query in ["", "?all=1", "?limit=1000", "?app=hello&hpc=local&status=succeeded"]:
        listed = alice.get(f"jobs{query}").json()
        assert job_id not in [j["id"] for j in listed["jobs"]]
        assert {j["user"] for j in listed["jobs"]} <= {"alice"}
    assert http["bob"].get(f"jobs/{job_id}").json()["cancel_requested"] is False

    admin = http["admin"]
    assert admin.get(f"jobs/{job_id}").json()["user"] == "bob"
    assert [e["type"] for e in admin.get(f"jobs/{job_id}/events").json()][-1] == "succeeded"
    assert "Hello, Bob!" in admin.get(f"jobs/{job_id}/logs").json()["data"]
    assert admin.get(f"jobs/{job_id}/results/result/greeting.txt").text == "Hello, Bob!\n"
    every = admin.get("admin/jobs?limit=1000").json()
    assert job_id in [j["id"] for j in every["jobs"]]
    bobs = admin.get("admin/jobs?user=bob&limit=1000").json()
    assert job_id in [j["id"] for j in bobs["jobs"]] and {j["user"] for j in bobs["jobs"]} == {"bob"}
    assert job_id in [j["id"] for j in admin.get("jobs?all=1&limit=1000").json()["jobs"]]
    assert job_id not in [j["id"] for j in admin.get("jobs?limit=1000").json()["jobs"]]


def test_admin_cancels_anyones_job_others_cannot(svc, http):
    job_id = long_job(http["bob"])["id"]
    assert_error(http["alice"].post(f"jobs/{job_id}/cancel"), 404, "not_found")
    assert_error(http["alice"].post(f"admin/jobs/{job_id}/cancel"), 403, "forbidden")
    assert http["bob"].get(f"jobs/{job_id}").json()["cancel_requested"] is False
    r = http["admin"].post(f"admin/jobs/{job_id}/cancel")
    assert r.status_code == 202, r.text
    assert r.json()["cancel_requested"] is True and r.json()["user"] == "bob"
    done = svc.wait_job(http["bob"], job_id, timeout=WAIT)
    assert done["status"] == "cancelled", done
    assert "cancel_requested" in [e["type"] for e in http["bob"].get(
        f"jobs/{job_id}/events").json()]
    body = assert_error(http["admin"].post(f"admin/jobs/{job_id}/cancel"), 409, "conflict")
    assert "cancelled" in body["message"]


def test_a_revoked_hub_token_stops_working_within_the_ttl(svc, hub, hub_token):
    token, token_id = hub_token("alice")
    with svc.client(token) as client:
        assert client.get("me").json()["name"] == "alice"
        r = httpx.delete(f"{hub.api_url}/users/alice/tokens/{token_id}",
                         headers=hub.headers("admin"), timeout=30)
        assert r.status_code == 204, r.text
        revoked = time.monotonic()
        assert httpx.get(f"{hub.api_url}/user", headers={"Authorization": f"token {token}"},
                         timeout=30).status_code in (401, 403)  # the hub agrees
        while True:
            r = client.get("me")
            if r.status_code == 401:
                break
            assert r.status_code == 200, r.text
            assert time.monotonic() - revoked < TTL + 2, "still accepted well after the TTL"
            time.sleep(0.1)
        assert_error(r, 401, "unauthorized")
        assert time.monotonic() - revoked <= TTL + 2
        time.sleep(0.3)
        assert_error(client.get("me"), 401, "unauthorized")  # and stays refused


async def _concurrent_gets(svc, token: str, path: str, n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=svc.api + "/", timeout=60, limits=limits,
                                 headers={"Authorization": f"token {token}"}) as client:
        return await asyncio.gather(*(client.get(path) for _ in range(n)))


def test_the_hub_is_asked_once_per_token_per_ttl_under_100_concurrent_requests(
        svc, http, hub_proxy, hub_token):
    job_id = submit(http["alice"])["id"]
    token, _ = hub_token("alice")
    assert hub_proxy.user_lookups(token) == 0
    responses = asyncio.run(_concurrent_gets(svc, token, f"jobs/{job_id}", 100))
    assert [r.status_code for r in responses] == [200] * 100
    assert {r.json()["id"] for r in responses} == {job_id}
    assert hub_proxy.user_lookups(token) == 1
    # still within the TTL: no more lookups
    responses = asyncio.run(_concurrent_gets(svc, token, "me", 20))
    assert {r.json()["name"] for r in responses} == {"alice"}
    assert hub_proxy.user_lookups(token) == 1
    # past the TTL: asked once more, again once for 100 concurrent requests
    time.sleep(TTL + 0.2)
    responses = asyncio.run(_concurrent_gets(svc, token, f"jobs/{job_id}", 100))
    assert [r.status_code for r in responses] == [200] * 100
    assert hub_proxy.user_lookups(token) == 2


def test_a_bogus_token_is_asked_once_per_ttl_too(svc, hub_proxy):
    bogus = uuid.uuid4().hex
    responses = asyncio.run(_concurrent_gets(svc, bogus, "me", 50))
    assert {r.status_code for r in responses} == {401}
    assert hub_proxy.user_lookups(bogus) == 1


def test_the_event_stream_carries_only_the_callers_jobs(svc, http, hub):
    seen: list[dict] = []
    alice_job: dict = {}
    with httpx.stream("GET", f"{svc.api}/events/stream", headers=hub.headers("alice"),
                      timeout=httpx.Timeout(30, read=20)) as stream:
        assert stream.status_code == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        bob_id = submit(http["bob"])["id"]
        alice_job = submit(http["alice"])
        deadline = time.monotonic() + WAIT
        kind = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]  # `job`, or `log` (new log text, its own data shape)
            elif line.startswith("data: ") and kind == "job":
                seen.append(json.loads(line[6:]))
                if seen[-1]["id"] == alice_job["id"] and seen[-1]["status"] == "succeeded":
                    break
            assert time.monotonic() < deadline, seen
    assert alice_job["id"] in {j["id"] for j in seen}
    assert bob_id not in {j["id"] for j in seen}
    assert {j["user"] for j in seen} == {"alice"}


# ============================================================================================
# Errors: one JSON shape, the right status, never a 500
# ============================================================================================
BAD_BODIES = [
    (b"{", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'"text"', "must be a JSON object"),
    (b"\xff\xfe{}", "not valid JSON"),
    (b'{"app": "hello", "params": {"lines": NaN}}', "not valid JSON"),
    (b'{"app": "hello", "params": {"delay": 1e999}}', "not valid JSON"),
    (b'{"app": "hello", "params": {"lines": ' + b"9" * 5000 + b"}}", "not valid JSON"),
    (b"[" * 5000 + b"]" * 5000, "not valid JSON"),
]


@pytest.mark.parametrize("body, text", BAD_BODIES, ids=lambda v: repr(v)[:30])
def test_bad_json_is_400(http, body, text):
    r = http["alice"].post("jobs", content=body, headers={"Content-Type": "application/json"})
    assert text in assert_error(r, 400, "bad_request")["message"]


def test_bad_json_to_admin_routes_is_400(http):
    assert_error(http["admin"].put("admin/users/alice/quota", content=b"{limit"), 400,
                 "bad_request")


# (path, what a caller without a token gets): routes that exist ask who is calling first
UNKNOWN = [("nope", 404), ("jobs/not-a-job", 404), (f"jobs/{'0' * 32}", 401),
           (f"jobs/{'0' * 32}/logs", 401), (f"jobs/{'0' * 32}/nothing", 404),
           ("jobs/xyz/results/a", 404), ("apps/no-such-app", 401), ("admin/nothing", 404),
           ("../v2/jobs", 404), ("../../hub/api/user", 404)]


@pytest.mark.parametrize("who", ["alice", "anon"])
@pytest.mark.parametrize("path, anon_status", UNKNOWN, ids=[p for p, _ in UNKNOWN])
def test_unknown_routes_and_jobs_are_404(http, who, path, anon_status):
    r = http[who].get(path)
    if who == "anon" and anon_status == 401:
        assert_error(r, 401, "unauthorized")
    else:
        assert_error(r, 404, "not_found")


def test_an_unknown_route_under_a_job_names_the_route(http):
    job_id = submit(http["alice"])["id"]
    body = assert_error(http["alice"].get(f"jobs/{job_id}/nothing"), 404, "not_found")
    assert "no route" in body["message"]


@pytest.mark.parametrize("method, path, allow", [
    ("delete", "jobs", "GET, POST"), ("put", f"jobs/{'0' * 32}", "GET"),
    ("get", f"jobs/{'0' * 32}/cancel", "POST"), ("delete", "me", "GET"),
    ("patch", "admin/users/alice/quota", "PUT"),
])
def test_wrong_methods_are_405_with_allow(http, method, path, allow):
    r = getattr(http["alice"], method)(path)
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["Allow"] == allow


def test_cancelling_a_finished_job_is_409(svc, http):
    job_id = submit(http["alice"])["id"]
    assert svc.wait_job(http["alice"], job_id, timeout=WAIT)["status"] == "succeeded"
    body = assert_error(http["alice"].post(f"jobs/{job_id}/cancel"), 409, "conflict")
    assert "succeeded" in body["message"]
    assert http["alice"].get(f"jobs/{job_id}").json()["cancel_requested"] is False


@pytest.mark.parametrize("body, loc", [
    ({"app": "hello", "params": {"lines": 1000}}, ["params", "lines"]),
    ({"app": "hello", "params": {"lines": 0}}, ["params", "lines"]),
    ({"app": "hello", "params": {"lines": "many"}}, ["params", "lines"]),
    ({"app": "hello", "params": {"lines": 2.5}}, ["params", "lines"]),
    ({"app": "hello", "params": {"delay": 10**400}}, ["params", "delay"]),
    ({"app": "hello", "params": {"name": ""}}, ["params", "name"]),
    ({"app": "hello", "params": {"name": ["x"]}}, ["params", "name"]),
    ({"app": "hello", "params": {"rm -rf /": 1}}, ["params", "rm -rf /"]),
    ({"app": "primes", "params": {"method": "magic"}}, ["params", "method"]),
    ({"app": "hello", "resources": {"cpus": 99}}, ["resources", "cpus"]),
    ({"app": "hello", "resources": {"memory": 100}}, ["resources", "memory"]),
    ({"app": "hello", "resources": {"cpus": "two"}}, ["resources", "cpus"]),
    ({"app": "hello", "hpc": "nowhere"}, ["hpc"]),
    ({"app": "nope"}, ["app"]),
    ({"params": {}}, ["app"]),
    ({"app": "hello", "colour": "red"}, ["colour"]),
    ({"app": "hello", "upload": "f" * 32}, ["upload"]),
    ({"app": "hello", "params": "lines=3"}, ["params"]),
])
def test_bad_input_is_422_with_the_field(http, body, loc):
    r = http["alice"].post("jobs", json=body)
    details = assert_error(r, 422, "validation_error")["details"]
    assert loc in [d["loc"] for d in details], details
    assert all(d["msg"] for d in details)


@pytest.mark.parametrize("query, loc", [
    ("limit=0", ["query", "limit"]), ("limit=1001", ["query", "limit"]),
    ("limit=ten", ["query", "limit"]), ("offset=-1", ["query", "offset"]),
    ("status=exploded", ["query", "status"]), ("status=queued,exploded", ["query", "status"]),
])
def test_bad_query_is_422(http, query, loc):
    for client, path in [(http["alice"], "jobs"), (http["admin"], "admin/jobs")]:
        details = assert_error(client.get(f"{path}?{query}"), 422, "validation_error")["details"]
        assert details[0]["loc"] == loc


def test_bad_log_query_is_422(http):
    job_id = submit(http["alice"])["id"]
    for query, loc in [("stream=stdin", ["query", "stream"]), ("offset=x", ["query", "offset"]),
                       ("limit=0", ["query", "limit"])]:
        body = assert_error(http["alice"].get(f"jobs/{job_id}/logs?{query}"), 422,
                            "validation_error")
        assert body["details"][0]["loc"] == loc


def test_admin_routes_are_403_for_users(http):
    for method, path, body in [("get", "admin/jobs", None), ("get", "admin/workers", None),
                               ("put", "admin/users/alice/quota", {"limit_seconds": 10**9}),
                               ("post", "admin/hpcs/local/drain", None),
                               ("post", "admin/hpcs/local/resume", None),
                               ("post", "apps", {"source": "/etc"})]:
        kwargs = {"json": body} if body is not None else {}
        assert_error(getattr(http["alice"], method)(path, **kwargs), 403, "forbidden")
    assert http["alice"].get("me").json()["quota"]["limit_seconds"] is None


def test_no_bad_input_above_made_the_server_fail(svc, http):
    # every test above sent bad input to this server; none may have been a 500
    assert_no_server_errors(svc)


# ============================================================================================
# Uploads
# ============================================================================================
def _zip(members: list[tuple[str, bytes, int | None]]) -> bytes:
    """members: (name, data, unix mode or None)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


def _tar(members: list[tuple[str, bytes | None, bytes, str | None]], mode="w") -> bytes:
    """members: (name, data or None, type, link target or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data, kind, target in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if target is not None:
                info.linkname = target
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return buf.getvalue()


LINK = stat.S_IFLNK | 0o777
EVIL = [
    ("zip ../", _zip([("ok.txt", b"ok", None), ("../evil.txt", b"x", None)])),
    ("zip a/../../", _zip([("a/../../evil.txt", b"x", None)])),
    ("zip absolute", _zip([("/tmp/evil.txt", b"x", None)])),
    ("zip backslashes", _zip([("..\\..\\evil.txt", b"x", None)])),
    ("zip symlink", _zip([("link", b"/etc/passwd", LINK)])),
    ("zip symlink dir", _zip([("d", b"..", LINK), ("d/evil.txt", b"x", None)])),
    ("zip clash", _zip([("a", b"file", None), ("a/b", b"under a file", None)])),
    ("tar ../", _tar([("../evil.txt", b"x", tarfile.REGTYPE, None)])),
    ("tar absolute", _tar([("/tmp/evil.txt", b"x", tarfile.REGTYPE, None)])),
    ("tar symlink", _tar([("link", None, tarfile.SYMTYPE, "/etc/passwd")])),
    ("tar symlink then through it", _tar([("d", None, tarfile.SYMTYPE, "/tmp"),
                                          ("d/evil.txt", b"x", tarfile.REGTYPE, None)])),
    ("tar hardlink", _tar([("hl", None, tarfile.LNKTYPE, "/etc/passwd")])),
    ("tar fifo", _tar([("fifo", None, tarfile.FIFOTYPE, None)])),
    ("tar.gz ../", _tar([("ok/../../evil.txt", b"x", tarfile.REGTYPE, None)], mode="w:gz")),
    ("not an archive", b"just some bytes that are neither zip nor tar"),
    ("damaged zip", _zip([("a.txt", b"a" * 1000, None)])[:-30]),
]


@pytest.mark.parametrize("archive", [a for _, a in EVIL], ids=[n for n, _ in EVIL])
def test_unsafe_archives_are_refused_and_leave_nothing(svc, http, archive):
    before = upload_entries(svc)
    r = http["alice"].post("uploads", content=archive)
    assert_error(r, 422, "validation_error")
    assert upload_entries(svc) == before  # no upload folder, no temporary file
    for top in (svc.tmp, "/tmp"):
        assert not os.path.exists(os.path.join(top, "evil.txt"))
    for dirpath, _, files in os.walk(svc.tmp):
        assert "evil.txt" not in files, dirpath


def test_oversized_uploads_are_413_and_leave_nothing(svc, http):
    alice = http["alice"]
    before = upload_entries(svc)
    # declared too large: refused before the body is read
    r = alice.post("uploads?name=big.bin", content=b"x" * (MAX_UPLOAD + 1))
    assert "limit" in assert_error(r, 413, "payload_too_large")["message"]
    # streamed without a length: counted while it arrives, a little over (read to the end)
    # and far over (answered at once, the connection closed)
    r = alice.post("uploads?name=big.bin", content=iter([b"x" * 4096] * (MAX_UPLOAD // 2048)))
    assert_error(r, 413, "payload_too_large")
    r = alice.post("uploads?name=big.bin", content=iter([b"x" * 65536] * 128))  # 8 MiB
    assert_error(r, 413, "payload_too_large")
    assert r.headers.get("Connection") == "close"
    assert_error(alice.post("uploads", content=b"x" * (8 << 20)), 413, "payload_too_large")
    # small, but unpacks to more than the limit allows (a zip bomb)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * (5 * MAX_UPLOAD))
    assert len(bomb.getvalue()) < MAX_UPLOAD
    assert_error(alice.post("uploads", content=bomb.getvalue()), 413, "payload_too_large")
    assert upload_entries(svc) == before
    # the client's connection is still good after a refusal (no reset on reuse)
    assert alice.get("me").status_code == 200
    # exactly at the limit is fine
    r = alice.post("uploads?name=edge.bin", content=b"y" * MAX_UPLOAD)
    assert r.status_code == 201, r.text
    assert r.json()["size"] == MAX_UPLOAD and r.json()["name"] == "edge.bin"
    assert upload_entries(svc) == before | {r.json()["id"]}


def test_empty_uploads_and_bad_file_names_are_422(svc, http):
    before = upload_entries(svc)
    assert_error(http["alice"].post("uploads", content=b""), 422, "validation_error")
    for name in ("..", "a/..", "..\\..", "x" * 300):
        body = assert_error(http["alice"].post("uploads", params={"name": name}, content=b"x"),
                            422, "validation_error")
        assert body["details"][0]["loc"] == ["query", "name"]
    assert upload_entries(svc) == before
    # a name is only a name: the file lands in the upload's own folder
    r = http["alice"].post("uploads", params={"name": "../../escape.txt"}, content=b"x")
    assert r.status_code == 201 and r.json()["name"] == "../../escape.txt"
    assert os.listdir(os.path.join(svc.data_dir, "uploads", r.json()["id"])) == ["escape.txt"]
    assert not os.path.exists(os.path.join(svc.data_dir, "escape.txt"))


def test_a_zip_upload_feeds_a_job_and_its_results_download(svc, http):
    alice, bob = http["alice"], http["bob"]
    archive = _zip([("input/a.txt", b"alpha\n", None), ("input/sub/b.txt", b"beta\n", None),
                    ("top.csv", b"x,y\n1,2\n", None), ("emptydir/", b"", None)])
    r = alice.post("uploads?name=data.zip", content=archive)
    assert r.status_code == 201, r.text
    upload = r.json()
    assert upload["size"] == len(b"alpha\nbeta\nx,y\n1,2\n") and upload["name"] == "data.zip"
    stored = os.path.join(svc.data_dir, "uploads", upload["id"])
    assert open(os.path.join(stored, "input", "sub", "b.txt"), "rb").read() == b"beta\n"
    assert not [n for n in os.listdir(os.path.dirname(stored)) if n.startswith(".incoming")]

    # bob can neither use nor see alice's upload
    details = assert_error(bob.post("jobs", json={"app": "hello", "upload": upload["id"]}),
                           422, "validation_error")["details"]
    assert details[0]["loc"] == ["upload"]

    job = submit(alice, upload=upload["id"], params={"name": "Zoë", "lines": 1, "delay": 0})
    assert job["upload"] == upload["id"]
    done = svc.wait_job(alice, job["id"], timeout=WAIT)
    assert done["status"] == "succeeded", done
    listing = {e["path"]: e for e in alice.get(f"jobs/{job['id']}/results").json()}
    assert {"result/data_listing.txt", "result/greeting.txt"} <= set(listing)
    data_listing = alice.get(f"jobs/{job['id']}/results/result/data_listing.txt")
    assert data_listing.status_code == 200
    assert data_listing.headers["Content-Type"] == "application/octet-stream"
    for name in ("a.txt", "b.txt", "top.csv", "sub", "input"):
        assert re.search(rf"(^|\s){re.escape(name)}(\s|$)", data_listing.text), data_listing.text
    assert len(data_listing.content) == listing["result/data_listing.txt"]["size"]
    greeting = alice.get(f"jobs/{job['id']}/results/result/greeting.txt")
    assert greeting.content.decode() == "Hello, Zoë!\n"

    folder = alice.get(f"jobs/{job['id']}/results/result")
    assert folder.status_code == 200 and folder.headers["Content-Type"] == "application/zip"
    assert 'filename="result.zip"' in folder.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(folder.content)) as zf:
        assert {"greeting.txt", "data_listing.txt"} <= set(zf.namelist())
        assert zf.read("greeting.txt").decode() == "Hello, Zoë!\n"
    assert_error(bob.get(f"jobs/{job['id']}/results/result/greeting.txt"), 404, "not_found")
    for escape in ["../../../../etc/passwd", "result/../../" + job["id"], "/etc/passwd",
                   "%2e%2e/%2e%2e/%2e%2e/etc/passwd", "result/%00"]:
        assert_error(alice.get(f"jobs/{job['id']}/results/{escape}"), 404, "not_found")


def test_results_never_follow_links_out_and_any_name_downloads(svc, http, tmp_path):
    """A job's results may hold links (a job writes what it likes) and names in any script:
    links that leave the job's results are not listed, zipped or served."""
    alice = http["alice"]
    job_id = submit(alice)["id"]
    assert svc.wait_job(alice, job_id, timeout=WAIT)["status"] == "succeeded"
    result = os.path.join(svc.data_dir, "results", job_id, "result")
    secret = tmp_path / "secret.txt"
    secret.write_text("middleware host secret")
    os.symlink(secret, os.path.join(result, "leak.txt"))
    os.symlink(tmp_path, os.path.join(result, "leakdir"))
    os.symlink("greeting.txt", os.path.join(result, "alias.txt"))  # inside: fine
    os.symlink("/nonexistent/x", os.path.join(result, "dangling"))
    with open(os.path.join(result, "données é.txt"), "w") as f:
        f.write("accents")

    listing = {e["path"] for e in alice.get(f"jobs/{job_id}/results").json()}
    assert "result/alias.txt" in listing and "result/données é.txt" in listing
    assert not {"result/leak.txt", "result/leakdir", "result/dangling"} & listing
    for path in ("result/leak.txt", "result/leakdir", "result/leakdir/secret.txt",
                 "result/dangling"):
        assert_error(alice.get(f"jobs/{job_id}/results/{path}"), 404, "not_found")
    folder = alice.get(f"jobs/{job_id}/results/result")
    with zipfile.ZipFile(io.BytesIO(folder.content)) as zf:
        names = set(zf.namelist())
        assert "alias.txt" in names and "leak.txt" not in names
        assert all(b"middleware host secret" not in zf.read(n) for n in names)
    whole = alice.get(f"jobs/{job_id}/results/")
    assert whole.status_code == 200
    assert f'filename="{job_id}.zip"' in whole.headers["Content-Disposition"]
    r = alice.get(f"jobs/{job_id}/results/result/données é.txt")
    assert r.status_code == 200 and r.text == "accents"
    assert "filename*=UTF-8''donn%C3%A9es%20%C3%A9.txt" in r.headers["Content-Disposition"]
    assert_no_server_errors(svc)


# ============================================================================================
# Paging and filters, quota, drain
# ============================================================================================
def test_jobs_paging_and_filters(svc, http):
    admin = http["admin"]  # only this test submits admin's own jobs
    made = [submit(admin)["id"] for _ in range(5)]
    made.append(submit(admin, app="primes", params={"limit": 100})["id"])
    for job_id in made:
        assert svc.wait_job(admin, job_id, timeout=WAIT)["status"] == "succeeded"
    running = long_job(admin)["id"]
    made.append(running)
    newest_first = list(reversed(made))

    page = admin.get("jobs?limit=2").json()
    assert page["total"] == 7 and [j["id"] for j in page["jobs"]] == newest_first[:2]
    pages = []
    for offset in range(0, 9, 3):
        pages += [j["id"] for j in admin.get(f"jobs?limit=3&offset={offset}").json()["jobs"]]
    assert pages == newest_first
    assert admin.get("jobs?offset=7").json() == {"jobs": [], "total": 7}
    created = [j["created_at"] for j in admin.get("jobs").json()["jobs"]]
    assert created == sorted(created, reverse=True)

    def ids(query):
        body = admin.get(f"jobs?{query}").json()
        assert body["total"] == len(body["jobs"])
        return {j["id"] for j in body["jobs"]}

    assert ids("status=succeeded") == set(made[:6])
    assert ids("status=succeeded&app=hello") == set(made[:5])
    assert ids("app=primes") == {made[5]}
    assert ids("hpc=local") == set(made)
    assert ids("hpc=elsewhere") == set()
    active = "status=queued,staging,submitted,running,finishing"
    assert ids(active) == {running}
    assert ids("status=queued&status=staging&status=submitted&status=running") <= {running}
    assert admin.get("admin/jobs?user=admin&limit=3").json()["total"] == 7
    assert {j["id"] for j in admin.get("admin/jobs?user=admin&status=succeeded&limit=100")
            .json()["jobs"]} == set(made[:6])

    assert admin.post(f"jobs/{running}/cancel").status_code == 202
    assert svc.wait_job(admin, running, timeout=WAIT)["status"] == "cancelled"
    assert ids("status=cancelled") == {running}
    assert ids("status=succeeded,cancelled") == set(made)


def test_quota_zero_refuses_the_next_submit(svc, http):
    admin, alice = http["admin"], http["alice"]
    try:
        r = admin.put("admin/users/alice/quota", json={"limit_seconds": 0})
        assert r.status_code == 200, r.text
        assert r.json()["limit_seconds"] == 0
        assert alice.get("me").json()["quota"]["limit_seconds"] == 0
        body = assert_error(alice.post("jobs", json={"app": "hello"}), 403, "quota_exceeded")
        assert "quota" in body["message"] and "administrator" in body["message"]
        before = alice.get("jobs").json()["total"]
        assert alice.get("jobs").json()["total"] == before  # nothing was created
        submit(http["bob"])  # bob's quota is his own
        details = assert_error(admin.put("admin/users/alice/quota", json={"limit_seconds": -1}),
                               422, "validation_error")["details"]
        assert details[0]["loc"] == ["limit_seconds"]
        assert_error(alice.put("admin/users/alice/quota", json={"limit_seconds": None}),
                     403, "forbidden")
        r = admin.put("admin/users/alice/quota", json={"limit_seconds": None})
        assert r.status_code == 200 and r.json()["limit_seconds"] is None
        submit(alice)
    finally:
        admin.put("admin/users/alice/quota", json={"limit_seconds": None})


def test_drain_and_resume_an_hpc(svc, http):
    admin, alice = http["admin"], http["alice"]
    try:
        r = admin.post("admin/hpcs/local/drain")
        assert r.status_code == 200, r.text
        assert {h["id"]: h["draining"] for h in r.json()}["local"] is True
        assert {h["id"]: h["draining"] for h in alice.get("hpcs").json()}["local"] is True
        body = assert_error(alice.post("jobs", json={"app": "hello"}), 409, "conflict")
        assert "drained" in body["message"]
        assert_error(alice.post("admin/hpcs/local/resume"), 403, "forbidden")
        assert_error(admin.post("admin/hpcs/nowhere/drain"), 404, "not_found")
        r = admin.post("admin/hpcs/local/resume")
        assert {h["id"]: h["draining"] for h in r.json()}["local"] is False
        job = submit(alice)
        assert svc.wait_job(alice, job["id"], timeout=WAIT)["status"] == "succeeded"
    finally:
        admin.post("admin/hpcs/local/resume")


def test_the_whole_module_left_no_server_errors(svc):
    assert_no_server_errors(svc)
