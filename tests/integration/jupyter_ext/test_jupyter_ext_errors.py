"""The Jupyter server extension's error answers, in a plain `jupyter server` in front of a
middleware that is down or answers oddly (a stand-in): always JSON with a code of the one
registry (`hpcbridge.errors`), never a file written outside the server's root. No stack."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import zipfile

import pytest
from services import free_port

from hpcbridge.errors import ERROR_CODES

pytestmark = [pytest.mark.slow]

JOB_ID = "a" * 32


def test_extension_is_enabled_in_the_venv():
    jupyter = os.path.join(os.path.dirname(sys.executable), "jupyter")
    out = subprocess.run([jupyter, "server", "extension", "list"],
                         capture_output=True, text=True, timeout=120)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    assert re.search(r"hpcbridge\.jupyter_ext\s+enabled", text), text
    assert re.search(r"hpcbridge\.jupyter_ext\s+\S*\s*OK", text), text


def test_middleware_down_is_a_clear_503(jupyter_server):
    down = f"http://127.0.0.1:{free_port()}"
    server = jupyter_server({"HPCBRIDGE_URL": down, "HPCBRIDGE_TOKEN": "t"})
    server.write("d/f.txt", "x")
    for method, path, body in [("GET", "api/me", None),
                               ("POST", "api/jobs", {"app": "hello"}),
                               ("GET", "api/events/stream", None),
                               ("POST", "local/upload", {"path": "d"}),
                               ("POST", "local/download", {"job_id": JOB_ID})]:
        r = server.http.request(method, path, json=body)
        assert r.status_code == 503, (path, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json")
        error = r.json()
        assert error["error"] == "middleware_unreachable", error
        assert "unreachable" in error["message"] and down in error["message"], error
    assert server.proc.poll() is None


def test_no_token_is_a_json_401(jupyter_server, fake_middleware):
    server = jupyter_server({"HPCBRIDGE_URL": fake_middleware.url, "HPCBRIDGE_TOKEN": ""})
    # tornado may close the connection of a request that a streaming handler refused in
    # prepare() before it read the request to its end: one connection per request
    close = {"Connection": "close"}
    for r in (server.http.get("api/me", headers=close),
              server.http.post("local/download", json={"job_id": JOB_ID}, headers=close)):
        assert r.status_code == 401, r.text
        assert r.json() == {"error": "unauthorized", "details": None,
                            "message": "no token for the middleware"}


def test_an_error_page_of_a_proxy_becomes_a_json_bad_gateway(jupyter_server, fake_middleware):
    page = (502, "text/html", b"<html><body>502 Bad Gateway</body></html>")
    fake_middleware.answers["/api/v1/me"] = page
    fake_middleware.answers[f"/api/v1/jobs/{JOB_ID}/results/"] = page
    server = jupyter_server({"HPCBRIDGE_URL": fake_middleware.url, "HPCBRIDGE_TOKEN": "t"})
    for r in (server.http.get("api/me"), server.http.post("local/download",
                                                          json={"job_id": JOB_ID})):
        assert r.status_code == 502, r.text
        assert r.json()["error"] == "bad_gateway" and "502" in r.json()["message"]
    # the middleware's own JSON errors pass through as they are
    r = server.http.get("api/jobs/nothing")
    assert r.status_code == 404 and r.json()["message"] == "no such thing"
    assert r.json()["error"] in ERROR_CODES


def test_retry_key_and_stream_resume_point_reach_the_middleware(jupyter_server,
                                                                fake_middleware):
    fake_middleware.answers["/api/v1/jobs"] = (201, "application/json", b'{"id": "x"}')
    fake_middleware.answers["/api/v1/events/stream"] = (200, "text/event-stream", b"")
    server = jupyter_server({"HPCBRIDGE_URL": fake_middleware.url, "HPCBRIDGE_TOKEN": "t"})
    r = server.http.post("api/jobs", json={"app": "hello"}, headers={"Idempotency-Key": "k-1"})
    assert r.status_code == 201, (r.text, fake_middleware.answers, fake_middleware.requests)
    server.http.get("api/events/stream", headers={"Last-Event-ID": "42"})
    seen = {path.split("?")[0]: {k.lower(): v for k, v in headers.items()}  # any case
            for _, path, headers in fake_middleware.requests}
    assert seen["/api/v1/jobs"].get("idempotency-key") == "k-1"
    assert seen["/api/v1/events/stream"].get("last-event-id") == "42"


@pytest.mark.parametrize("member", ["../../outside.txt", "../../../outside.txt",
                                    "/tmp/hpcbridge-outside.txt"])
def test_results_with_a_member_outside_are_refused_whole(jupyter_server, fake_middleware,
                                                         tmp_path, member):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("result/ok.txt", "fine")
        zf.writestr(member, "escaped")
    fake_middleware.answers[f"/api/v1/jobs/{JOB_ID}/results/"] = (
        200, "application/zip", buf.getvalue())
    server = jupyter_server({"HPCBRIDGE_URL": fake_middleware.url, "HPCBRIDGE_TOKEN": "t"})
    r = server.http.post("local/download", json={"job_id": JOB_ID})
    assert r.status_code == 502, r.text
    error = r.json()
    assert error["error"] == "bad_gateway" and "refusing the results" in error["message"]
    assert not list(tmp_path.rglob("outside.txt"))
    assert not os.path.exists("/tmp/hpcbridge-outside.txt")
    assert server.proc.poll() is None


def test_results_that_are_not_an_archive_are_a_json_bad_gateway(jupyter_server,
                                                                fake_middleware):
    fake_middleware.answers[f"/api/v1/jobs/{JOB_ID}/results/"] = (
        200, "application/zip", json.dumps({"not": "a zip"}).encode())
    server = jupyter_server({"HPCBRIDGE_URL": fake_middleware.url, "HPCBRIDGE_TOKEN": "t"})
    r = server.http.post("local/download", json={"job_id": JOB_ID})
    assert r.status_code == 502 and r.json()["error"] == "bad_gateway", r.text
