"""The SDK's errors, against real sockets: a port nobody listens on, and a tiny HTTP server
answering what a middleware or a proxy in front of it would answer. No stack needed."""
from __future__ import annotations

import io
import socket
import time
import zipfile

import httpx
import pytest
from services import free_port

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
    url = f"http://127.0.0.1:{free_port()}"
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


def test_download_with_middleware_down_is_unavailable(tmp_path, job_of):
    client = Client(f"http://127.0.0.1:{free_port()}", "tok", retries=0)
    with pytest.raises(Unavailable):
        job_of(client).download(str(tmp_path / "out"))


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


def test_download_error_with_non_json_body_is_typed(canned, tmp_path, job_of):
    client = canned(404, b"Not Found", "text/plain")
    with pytest.raises(NotFound):
        job_of(client).download(str(tmp_path / "out"))
    client = canned(503, {"error": "unavailable", "message": "results are not there"})
    with pytest.raises(Unavailable) as info:
        job_of(client).download(str(tmp_path / "out"))
    assert info.value.message == "results are not there"


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/evil.txt", "a/../../evil.txt"])
def test_download_refuses_an_archive_with_paths_outside_dest(canned, tmp_path, job_of,
                                                              member):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("result/ok.txt", "fine")
        zf.writestr(member, "x")
    client = canned(200, buf.getvalue(), "application/zip")
    with pytest.raises(HPCBridgeError, match="refusing the results of job"):
        job_of(client).download(str(tmp_path / "out"))
    assert not (tmp_path / "evil.txt").exists()
    assert not [p for p in tmp_path.rglob("evil.txt")]


def test_download_of_something_that_is_not_an_archive_is_typed(canned, tmp_path, job_of):
    client = canned(200, b"<html>login</html>", "text/html")
    with pytest.raises(HPCBridgeError, match="refusing") as info:
        job_of(client).download(str(tmp_path / "out"))
    assert not isinstance(info.value, ValueError)


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
