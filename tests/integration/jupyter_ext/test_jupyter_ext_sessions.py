"""The extension's session proxy (`hpcbridge.jupyter_ext.sessions`) in a plain `jupyter
server`: HTTP and WebSocket at <base>/hpcbridge/api/sessions/<id>/proxy/… reach the
middleware's /api/v1/sessions/<id>/proxy/… with the user's token and the API prefix header.

The first test puts a stand-in middleware behind it (a tornado app in this process) to see
exactly what reaches it and to drive the cases a real service rarely shows (subprotocols,
binary frames, close codes, redirects, cookies); the second goes through the real middleware
to a real session's service on Slurm."""
from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
from services import free_port
from tornado import httpclient, web, websocket
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.netutil import bind_sockets

from hpcbridge.jupyter_ext.sessions import service_cookies

JTOKEN = "jupyter-test-token"  # the servers of conftest.py

SID = "c" * 32
PROXY = f"api/sessions/{SID}/proxy/"


class _Seen:
    requests: list = []
    sockets: list = []


class _Page(web.RequestHandler):
    def _answer(self, rest):
        _Seen.requests.append((self.request.method, self.request.path, self.request.query,
                               dict(self.request.headers), self.request.body))
        if rest == "gone":
            self.set_status(404)
            return self.finish({"error": "not_found", "message": f"no session {SID}"})
        if rest == "moved":
            return self.redirect(f"/user/x/hpcbridge/api/sessions/{SID}/proxy/there")
        if rest == "teapot":
            self.set_status(418)
            self.set_header("Content-Type", "text/html")
            return self.finish("<p>the service's own error page</p>")
        self.add_header("Set-Cookie", "a=1; Path=/")
        self.add_header("Set-Cookie", "b=2; Path=/")
        self.set_header("Content-Type", "text/plain")
        self.finish(f"{self.request.method} {rest} {len(self.request.body)}")

    get = post = put = patch = delete = _answer

    def check_xsrf_cookie(self):
        pass


class _Echo(websocket.WebSocketHandler):
    def select_subprotocol(self, subprotocols):
        return "v1.test" if "v1.test" in subprotocols else None

    def open(self, rest):
        _Seen.sockets.append((rest, dict(self.request.headers)))
        if rest == "slam":
            self.close(4001, "the service said no")

    async def on_message(self, message):
        if message == "bye":
            self.close(1000, "bye")
            return
        await self.write_message(message, binary=isinstance(message, bytes))


class _Refuse(web.RequestHandler):
    def get(self):
        self.set_status(404)
        self.finish({"error": "not_found", "message": "no session " + "d" * 32})


@pytest.fixture
def standin():
    """A middleware stand-in on its own loop in a thread: its URL."""
    sockets = bind_sockets(0, "127.0.0.1")
    ready, box = threading.Event(), {}

    def serve():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = web.Application([
            (rf"/api/v1/sessions/{SID}/proxy/ws/(.*)", _Echo),
            (rf"/api/v1/sessions/{'d' * 32}/proxy/ws/", _Refuse),
            (rf"/api/v1/sessions/{SID}/proxy/(.*)", _Page)])
        server = HTTPServer(app)
        server.add_sockets(sockets)
        box["loop"], box["server"] = IOLoop.current(), server
        ready.set()
        loop.run_forever()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    _Seen.requests.clear()
    _Seen.sockets.clear()
    yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    box["loop"].add_callback(box["server"].stop)
    box["loop"].add_callback(box["loop"].stop)
    thread.join(10)


def test_service_cookies_keep_only_the_services():
    assert service_cookies("username-127-0-0-1-8888=s; _xsrf=x; jupyterhub-user-alice=h; "
                           "lab=1") == "_xsrf=x; lab=1"
    assert service_cookies("") == ""


async def _connect(url: str):
    return await _ws(url)


def _ws(url: str, **kwargs):
    request = httpclient.HTTPRequest(url, headers={"Authorization": f"token {JTOKEN}"},
                                     connect_timeout=10, request_timeout=10)
    return asyncio.wait_for(websocket.websocket_connect(request, **kwargs), 20)


@pytest.mark.slow
def test_http_and_websocket_through_the_extension(jupyter_server, standin):
    server = jupyter_server({"HPCBRIDGE_URL": standin, "HPCBRIDGE_TOKEN": "mw-token"})
    http = server.http
    # HTTP: method, %-encoded path, query and body arrive as sent; our token, not the
    # browser's; the prefix the browser sees the API under; the service's cookies, not
    # Jupyter's login cookie
    r = http.patch(PROXY + "api/contents/my%20notebook.ipynb", params={"x": "1 2"},
                   content=b"12345", headers={"Cookie": "lab=1; username-h-1=secret",
                                              "X-Custom": "yes"})
    assert r.status_code == 200, r.text
    assert r.text == "PATCH api/contents/my notebook.ipynb 5"
    cookies = r.headers.get_list("set-cookie")  # (and Jupyter's own login cookie)
    assert "a=1; Path=/" in cookies and "b=2; Path=/" in cookies, cookies
    method, path, query, headers, body = _Seen.requests[-1]
    assert path == f"/api/v1/sessions/{SID}/proxy/api/contents/my%20notebook.ipynb"
    assert query == "x=1+2" and body == b"12345"
    assert headers["Authorization"] == "token mw-token"
    assert headers["X-Hpcbridge-Api-Prefix"] == "/hpcbridge/api"
    assert headers["Cookie"] == "lab=1" and headers["X-Custom"] == "yes"
    # the service's redirects and error pages pass as they are; the middleware's JSON too
    r = http.get(PROXY + "moved", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"].endswith(f"{SID}/proxy/there")
    r = http.get(PROXY + "teapot")
    assert r.status_code == 418 and "own error page" in r.text
    r = http.get(PROXY + "gone")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    # a POST without Jupyter's XSRF token (cookie login, as a browser) passes only from
    # this origin: a proxied app sends its own XSRF token, a cross-site page is refused
    login = httpx.Client(base_url=server.url, timeout=30)
    login.get("/login")
    login.post("/login", data={"password": JTOKEN, "_xsrf": login.cookies.get("_xsrf")})
    r = login.post(f"/hpcbridge/{PROXY}api/kernels", content=b"{}",
                   headers={"Origin": "http://evil.example", "Connection": "close"})
    assert r.status_code in (403, 404), r.text
    r = login.post(f"/hpcbridge/{PROXY}api/kernels", content=b"{}",
                   headers={"Origin": server.url})
    assert r.status_code == 200 and r.text == "POST api/kernels 2", r.text
    login.close()

    asyncio.run(_websocket_checks(server.url.replace("http", "ws", 1) + "/hpcbridge/"))


async def _websocket_checks(base: str):
    # frames both ways, text and binary; the service's subprotocol choice reaches the client
    conn = await _ws(base + PROXY + "ws/kernel?session=1", subprotocols=["v1.test", "other"])
    assert conn.selected_subprotocol == "v1.test"
    await conn.write_message("hello")
    assert await asyncio.wait_for(conn.read_message(), 10) == "hello"
    blob = bytes(range(256)) * 4096  # 1 MiB
    await conn.write_message(blob, binary=True)
    assert await asyncio.wait_for(conn.read_message(), 10) == blob
    rest, headers = _Seen.sockets[-1]
    assert rest == "kernel" and headers["Authorization"] == "token mw-token"
    assert headers["X-Hpcbridge-Api-Prefix"] == "/hpcbridge/api"
    # the service closes: the client sees its code and reason
    await conn.write_message("bye")
    assert await asyncio.wait_for(conn.read_message(), 10) is None
    assert (conn.close_code, conn.close_reason) == (1000, "bye")
    conn = await _ws(base + PROXY + "ws/slam")
    assert await asyncio.wait_for(conn.read_message(), 10) is None
    assert (conn.close_code, conn.close_reason) == (4001, "the service said no")
    # the client closes: the upstream side closes too (a new socket still works)
    conn = await _ws(base + PROXY + "ws/x")
    conn.close(1000)
    conn = await _ws(base + PROXY + "ws/y")
    await conn.write_message("again")
    assert await asyncio.wait_for(conn.read_message(), 10) == "again"
    conn.close()
    # a refusal is an HTTP answer with the middleware's JSON error, not a dead socket
    with pytest.raises(httpclient.HTTPClientError) as refused:
        await _ws(base + f"api/sessions/{'d' * 32}/proxy/ws/")
    assert refused.value.code == 404
    assert json.loads(refused.value.response.body)["error"] == "not_found"
    # without the Jupyter token: refused before anything reaches the middleware
    seen = len(_Seen.sockets)
    with pytest.raises(httpclient.HTTPClientError) as refused:
        await asyncio.wait_for(websocket.websocket_connect(base + PROXY + "ws/z"), 20)
    assert refused.value.code == 403 and len(_Seen.sockets) == seen


@pytest.mark.slow
def test_middleware_down_is_a_json_503_for_http_and_websocket(jupyter_server):
    down = f"http://127.0.0.1:{free_port()}"
    server = jupyter_server({"HPCBRIDGE_URL": down, "HPCBRIDGE_TOKEN": "t"})
    r = server.http.get(PROXY + "lab")
    assert r.status_code == 503 and r.json()["error"] == "middleware_unreachable", r.text
    assert down in r.json()["message"]
    base = server.url.replace("http", "ws", 1) + "/hpcbridge/"
    with pytest.raises(httpclient.HTTPClientError) as refused:
        asyncio.run(_connect(base + PROXY + "api/kernels/k/channels"))
    assert refused.value.code == 503
    body = json.loads(refused.value.response.body)
    assert body["error"] == "middleware_unreachable" and down in body["message"]


@pytest.mark.stack
@pytest.mark.slow
def test_a_real_session_through_the_extension(slurm_middleware, hub, jupyter_server):
    """alice's server starts the webecho service on Slurm through the extension: its URL
    is under the extension's prefix and HTTP and WebSocket reach it; bob's server gets 404
    for it."""
    alice = jupyter_server({"HPCBRIDGE_URL": slurm_middleware.url,
                            "HPCBRIDGE_TOKEN": hub.tokens["alice"]})
    bob = jupyter_server({"HPCBRIDGE_URL": slurm_middleware.url,
                          "HPCBRIDGE_TOKEN": hub.tokens["bob"]})
    r = alice.api.post("sessions", json={"app": "webecho", "hpc": "slurm",
                                         "resources": {"time": 5}})
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["url"] == f"/hpcbridge/api/sessions/{info['id']}/proxy/"
    try:
        deadline = time.monotonic() + 240
        while info["status"] == "starting" and time.monotonic() < deadline:
            time.sleep(0.5)
            info = alice.api.get(f"sessions/{info['id']}").json()
        assert info["status"] == "running", alice.api.get(f"sessions/{info['id']}/events").text
        url = alice.url + info["url"]
        page = httpx.get(url + "a%20b", params={"x": "1"}, headers=alice.headers, timeout=30)
        assert page.status_code == 200, page.text
        assert page.json()["app"] == "webecho" and page.json()["query"] == "x=1"
        assert page.json()["path"] == "a%20b"  # below its base URL, still %-encoded
        echo = httpx.post(url + "echo", content=b"ping" * 5000, headers=alice.headers,
                          timeout=30)
        assert echo.status_code == 200 and echo.content == b"ping" * 5000
        assert asyncio.run(_echo_through(url.replace("http", "ws", 1) + "ws")) == \
            ["hello", "x" * 70000]
        # bob's own server forwards with bob's token: alice's session does not exist
        r = httpx.get(bob.url + info["url"], headers=bob.headers, timeout=30)
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        with pytest.raises(httpclient.HTTPClientError) as refused:
            asyncio.run(_echo_through(bob.url.replace("http", "ws", 1) + info["url"] + "ws"))
        assert refused.value.code == 404
    finally:  # its job cancelled before the maintainer stops (else it holds a CPU)
        assert alice.api.delete(f"sessions/{info['id']}").status_code == 202
        deadline = time.monotonic() + 60
        while alice.api.get(f"sessions/{info['id']}").json()["status"] != "stopped":
            assert time.monotonic() < deadline, "the session did not stop in 60 s"
            time.sleep(0.5)


async def _echo_through(url: str) -> list:
    conn = await _ws(url)
    answers = []
    for message in ("hello", "x" * 70000):
        await conn.write_message(message)
        answers.append(await asyncio.wait_for(conn.read_message(), 10))
    conn.close()
    return answers
