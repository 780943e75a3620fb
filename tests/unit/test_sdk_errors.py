"""The SDK's errors, against real sockets: a port nobody listens on, and a tiny HTTP server
answering what a middleware or a proxy in front of it would answer. No stack needed."""
from __future__ import annotations

import http.server
import json
import socket
import threading
import time

import httpx
import pytest

from hpcbridge import Client
from hpcbridge.errors import (
    AuthError,
    ConfigurationError,
    Conflict,
    HPCBridgeError,
    NotFound,
    QuotaExceeded,
    Unavailable,
    ValidationError,
    error_for,
)

ENV = ("HPCBRIDGE_URL", "HPCBRIDGE_TOKEN", "JUPYTERHUB_API_TOKEN")


@pytest.fixture
def no_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens


class Canned(http.server.BaseHTTPRequestHandler):
    """Answers every request with the server's `answer` (status, content type, body)."""

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        elif self.headers.get("Transfer-Encoding") == "chunked":
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                self.rfile.read(size + 2)
                if size == 0:
                    break
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        status, ctype, body = self.server.answer
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def canned():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Canned)
    server.seen, server.answer = [], (200, "application/json", b"{}")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def answer(status, body, ctype="application/json"):
        server.answer = (status, ctype, body if isinstance(body, bytes) else
                         json.dumps(body).encode())
        return Client(f"http://127.0.0.1:{server.server_address[1]}", "tok-123", retries=0)
    answer.server = server
    yield answer
    server.shutdown()
    server.server_close()


JOB = {"id": "a" * 32, "user": "alice", "app": "hello", "hpc": "slurm", "status": "succeeded",
       "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z"}


# --- configuration -------------------------------------------------------------------
def test_nothing_configured_is_a_clear_configuration_error(no_env):
    with pytest.raises(ConfigurationError) as info:
        Client()
    assert "HPCBRIDGE_URL" in str(info.value)
    assert isinstance(info.value, HPCBridgeError)


def test_url_without_token_names_the_token_variables(no_env, monkeypatch):
    monkeypatch.setenv("HPCBRIDGE_URL", "http://127.0.0.1:8710")
    with pytest.raises(ConfigurationError) as info:
        Client()
    assert "HPCBRIDGE_TOKEN" in str(info.value) and "JUPYTERHUB_API_TOKEN" in str(info.value)


def test_environment_is_read_and_url_normalised(no_env, monkeypatch, canned):
    canned(200, {"name": "alice", "admin": False, "quota": {}})
    port = canned.server.server_address[1]
    monkeypatch.setenv("HPCBRIDGE_URL", f"http://127.0.0.1:{port}/")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-token")
    client = Client()
    assert client.url == f"http://127.0.0.1:{port}/api/v1"
    assert client.me().name == "alice"
    assert canned.server.seen[-1] == ("GET", "/api/v1/me", "token hub-token")
    # HPCBRIDGE_TOKEN wins over the hub's token
    monkeypatch.setenv("HPCBRIDGE_TOKEN", "own-token")
    Client().me()
    assert canned.server.seen[-1][2] == "token own-token"


# --- the middleware is not there -----------------------------------------------------
def test_middleware_down_is_unavailable_not_an_httpx_traceback():
    url = f"http://127.0.0.1:{closed_port()}"
    t0 = time.monotonic()
    with pytest.raises(Unavailable):  # the default client retries the connection a little
        Client(url, "tok").me()
    assert time.monotonic() - t0 < 15
    client = Client(url, "tok", retries=0)
    for call in (client.me, client.apps, lambda: client.job("a" * 32),
                 lambda: client.submit("hello", params={"name": "x"})):
        with pytest.raises(Unavailable) as info:
            call()
        assert url in info.value.message
        assert not isinstance(info.value, httpx.HTTPError)
        assert info.value.__cause__ is None and info.value.__suppress_context__


def test_download_with_middleware_down_is_unavailable(tmp_path):
    client = Client(f"http://127.0.0.1:{closed_port()}", "tok", retries=0)
    from hpcbridge.client import Job
    from hpcbridge.schemas import JobInfo
    job = Job(client, JobInfo(**JOB))
    with pytest.raises(Unavailable):
        job.download(str(tmp_path / "out"))


def test_timeout_is_unavailable(canned):
    # a server that accepts but never answers
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        client = Client(f"http://127.0.0.1:{s.getsockname()[1]}", "tok", timeout=0.5,
                        retries=0)
        with pytest.raises(Unavailable):
            client.me()


# --- answers of the middleware -------------------------------------------------------
def test_422_is_validation_error_with_field_paths(canned):
    client = canned(422, {"error": "validation_error", "message": "params.lines: must be at "
                          "least 1", "details": [
                              {"loc": ["params", "lines"], "msg": "must be at least 1"},
                              {"loc": ["resources", "cpus"], "msg": "must be at most 2"}]})
    with pytest.raises(ValidationError) as info:
        client.submit("hello", params={"lines": 0}, resources={"cpus": 9})
    err = info.value
    assert err.status == 422 and err.code == "validation_error"
    assert err.fields == {"params.lines": "must be at least 1",
                          "resources.cpus": "must be at most 2"}
    assert "params.lines" in str(err)


@pytest.mark.parametrize("status,code,cls", [
    (400, "bad_request", ValidationError), (401, "unauthorized", AuthError),
    (403, "forbidden", AuthError), (403, "quota_exceeded", QuotaExceeded),
    (404, "not_found", NotFound), (409, "conflict", Conflict),
    (502, "bad_gateway", Unavailable), (503, "middleware_unreachable", Unavailable),
    (504, "gateway_timeout", Unavailable), (500, "internal_error", HPCBridgeError)])
def test_status_codes_map_to_typed_errors(canned, status, code, cls):
    client = canned(status, {"error": code, "message": f"it is {code}", "details": None})
    with pytest.raises(cls) as info:
        client.me()
    assert type(info.value) is cls
    assert info.value.message == f"it is {code}" and info.value.status == status
    assert info.value.code == code and info.value.fields == {} if cls is ValidationError \
        else info.value.details == []


def test_non_json_error_page_from_a_proxy(canned):
    client = canned(502, b"<html><body>502 Bad Gateway</body></html>", "text/html")
    with pytest.raises(Unavailable) as info:
        client.me()
    assert "502 Bad Gateway" in info.value.message


def test_non_json_success_is_a_clear_error_not_a_decode_traceback(canned):
    # e.g. HPCBRIDGE_URL pointing at JupyterHub's login page instead of the middleware
    client = canned(200, b"<html>JupyterHub login</html>", "text/html")
    with pytest.raises(HPCBridgeError) as info:
        client.me()
    assert "not JSON" in info.value.message or "middleware" in info.value.message
    assert not isinstance(info.value, ValueError)


def test_download_error_with_non_json_body_is_typed(canned, tmp_path):
    from hpcbridge.client import Job
    from hpcbridge.schemas import JobInfo
    client = canned(404, b"Not Found", "text/plain")
    with pytest.raises(NotFound):
        Job(client, JobInfo(**JOB)).download(str(tmp_path / "out"))
    client = canned(503, {"error": "unavailable", "message": "results are not there"})
    with pytest.raises(Unavailable) as info:
        Job(client, JobInfo(**JOB)).download(str(tmp_path / "out"))
    assert info.value.message == "results are not there"


def test_download_refuses_paths_outside_dest(canned, tmp_path):
    import io
    import zipfile

    from hpcbridge.client import Job
    from hpcbridge.schemas import JobInfo
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../evil.txt", "x")
    client = canned(200, buf.getvalue(), "application/zip")
    with pytest.raises(HPCBridgeError, match="refusing"):
        Job(client, JobInfo(**JOB)).download(str(tmp_path / "out"))
    assert not (tmp_path / "evil.txt").exists()


def test_upload_of_missing_path(canned):
    client = canned(201, {"id": "u1", "name": "x", "size": 1})
    with pytest.raises(HPCBridgeError, match="nothing to upload"):
        client.upload("/no/such/path")


def test_error_for_tolerates_odd_bodies():
    assert isinstance(error_for(422, {}), ValidationError)
    assert error_for(422, {}).fields == {}
    assert error_for(418, {"message": "teapot"}).message == "teapot"
    err = error_for(422, {"details": [{"loc": ["params", "n"], "msg": "bad"}, {"msg": "x"}]})
    assert err.fields == {"params.n": "bad", "": "x"}


# --- Job.wait: the event stream, and polling where there is none ----------------------
class Scripted(http.server.BaseHTTPRequestHandler):
    """GET jobs/<id> answers the next status of `server.statuses` (the last one sticks);
    events/stream answers `server.stream` (status, content type, body chunks)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.server.seen.append(self.path)
        if self.path.startswith("/api/v1/events/stream"):
            status, ctype, chunks = self.server.stream
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for delay, chunk in chunks:
                time.sleep(delay)
                data = chunk.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        statuses = self.server.statuses
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        body = json.dumps({**JOB, "status": status}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def sse(status: str, job_id: str = JOB["id"]) -> str:
    return f"event: job\nid: {job_id}\ndata: {json.dumps({**JOB, 'id': job_id, 'status': status})}\n\n"


def test_wait_follows_the_event_stream(scripted):
    from hpcbridge.client import Job
    from hpcbridge.schemas import JobInfo
    scripted.statuses = ["queued", "queued"]  # before the stream, and once it is open
    other = "b" * 32
    scripted.stream = (200, "text/event-stream", [
        (0, ": connected\n\n"), (0.2, sse("running", other)), (0.2, sse("submitted")),
        (0.2, sse("running")), (0.2, ": keepalive\n\n"), (0.2, sse("succeeded")),
        (5, ": keepalive\n\n")])
    client = Client(scripted.url, "tok", retries=0)
    job = Job(client, JobInfo(**{**JOB, "status": "queued"}))
    t0 = time.monotonic()
    job.wait(progress=False, poll=0.05)
    assert job.status == "succeeded"
    assert time.monotonic() - t0 < 4  # did not wait for the stream's end
    asks = [p for p in scripted.seen if p.startswith("/api/v1/jobs/")]
    assert len(asks) == 2 and scripted.seen.count("/api/v1/events/stream") == 1


def test_wait_polls_where_there_is_no_stream(scripted):
    from hpcbridge.client import Job
    from hpcbridge.schemas import JobInfo
    scripted.statuses = ["queued", "running", "running", "finishing", "succeeded"]
    scripted.stream = (404, "application/json", [(0, '{"error": "not_found"}')])
    client = Client(scripted.url, "tok", retries=0)
    job = Job(client, JobInfo(**{**JOB, "status": "queued"}))
    job.wait(progress=False, poll=0.05)
    assert job.status == "succeeded"
    assert scripted.seen.count("/api/v1/events/stream") == 1  # tried once, then polled
    assert len([p for p in scripted.seen if p.startswith("/api/v1/jobs/")]) == 5


def test_wait_times_out_on_a_quiet_stream(scripted):
    from hpcbridge.client import Job
    from hpcbridge.schemas import JobInfo
    scripted.statuses = ["running"]
    scripted.stream = (200, "text/event-stream", [(0, ": connected\n\n"), (10, "")])
    client = Client(scripted.url, "tok", retries=0)
    job = Job(client, JobInfo(**{**JOB, "status": "running"}))
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        job.wait(progress=False, timeout=1)
    assert time.monotonic() - t0 < 4
