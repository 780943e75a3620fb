"""The Jupyter server extension (`hpcbridge.jupyter_ext`) in a plain `jupyter server` (token
auth) in front of the real middleware, Slurm and hub tokens: forwarding, streaming both ways,
and the local upload and download endpoints."""
from __future__ import annotations

import os
import threading
import time

import httpx
import pytest

pytestmark = [pytest.mark.stack, pytest.mark.slow]

WAIT = 240


def test_forwards_as_the_configured_user(lab):
    r = lab.http.get("api/me")
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "alice"
    assert {a["id"] for a in lab.http.get("api/apps").json()} >= {"hello", "primes"}
    # query strings pass through
    r = lab.http.get("api/jobs", params={"status": "bogus"})
    assert r.status_code == 422 and r.json()["details"][0]["loc"] == ["query", "status"]


def test_jupyter_auth_comes_first(lab):
    r = httpx.get(f"{lab.url}/hpcbridge/api/me", timeout=30)
    assert r.status_code == 403 and r.headers["content-type"].startswith("application/json")
    r = httpx.get(f"{lab.url}/hpcbridge/api/me", timeout=30,
                  headers={"Authorization": "token wrong"})
    assert r.status_code == 403


def test_local_upload_job_and_local_download(lab, slurm_middleware):
    data = os.path.join(lab.root, "inputs", "survey")
    lab.write("inputs/survey/sites.csv", "id,lat,lon\n1,40.1,-88.2\n")
    lab.write("inputs/survey/raw/day1.txt", "x" * 5000)
    os.symlink("/etc/passwd", os.path.join(data, "link"))  # never sent along

    r = lab.http.post("local/upload", json={"path": "inputs/survey"})
    assert r.status_code == 201, r.text
    upload = r.json()
    assert upload["name"] == "survey.zip" and upload["id"]

    r = lab.http.post("api/jobs", json={"app": "hello", "hpc": "slurm", "upload": upload["id"],
                                        "params": {"name": "Lab", "lines": 1, "delay": 0}})
    assert r.status_code == 201, r.text
    assert r.headers["location"].endswith(r.json()["id"])
    job = slurm_middleware.wait_job(lab.api, r.json()["id"], timeout=WAIT)
    assert job["status"] == "succeeded" and job["user"] == "alice", job

    r = lab.http.post("local/download", json={"job_id": job["id"]})
    assert r.status_code == 200, r.text
    rel = r.json()["path"]
    assert rel == f"hpcbridge-results/{job['id']}"
    folder = os.path.join(lab.root, rel)
    with open(os.path.join(folder, "result", "greeting.txt")) as f:
        assert f.read() == "Hello, Lab!\n"
    with open(os.path.join(folder, "result", "data_listing.txt")) as f:
        listing = f.read()
    assert "sites.csv" in listing and "day1.txt" in listing and "link" not in listing

    # a single result file streams through the forwarder as it is
    r = lab.http.get(f"api/jobs/{job['id']}/results/result/greeting.txt")
    assert r.status_code == 200 and r.content == b"Hello, Lab!\n"
    assert "greeting.txt" in r.headers["content-disposition"]


def test_local_endpoints_refuse_bad_input(lab):
    r = lab.http.post("local/upload", json={"path": "../../etc"})
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    r = lab.http.post("local/upload", json={"path": "nothing-here"})
    assert r.status_code == 404 and "nothing-here" in r.json()["message"]
    r = lab.http.post("local/upload", content=b"[1,")
    assert r.status_code == 400 and r.json()["error"] == "bad_request"
    r = lab.http.post("local/download", json={"job_id": "../x"})
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    r = lab.http.post("local/download", json={"job_id": "0" * 32})
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_large_upload_streams_through(lab):
    payload = os.urandom(1 << 20) * 24  # 24 MiB, sent in chunks
    sent = []

    def body():
        for i in range(0, len(payload), 1 << 20):
            sent.append(i)
            yield payload[i:i + (1 << 20)]
    r = lab.http.post("api/uploads", params={"name": "blob.bin"}, content=body(),
                      headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert r.json()["size"] == len(payload) and r.json()["name"] == "blob.bin"


def test_refused_upload_relays_the_middleware_answer(slurm_middleware, jupyter_server):
    """The middleware refuses a body before reading it (bad token): the browser gets the
    middleware's 401, not a 502 'Stream closed', and the server stays healthy."""
    server = jupyter_server({"HPCBRIDGE_URL": slurm_middleware.url,
                             "HPCBRIDGE_TOKEN": "expired-token"})
    r = server.http.post("api/uploads", params={"name": "big.bin"},
                         content=os.urandom(1 << 20) * 8)
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "unauthorized"
    server.write("d/f.txt", "x")
    r = server.http.post("local/upload", json={"path": "d"})
    assert r.status_code == 401, r.text
    assert server.http.get("api/me").status_code == 401


def test_event_stream_is_forwarded_as_it_happens(lab, slurm_middleware):
    events: list[str] = []
    got_connected = threading.Event()
    got_job = threading.Event()
    job_holder: dict = {}

    def listen():
        with httpx.Client(timeout=httpx.Timeout(60, read=90),
                          headers=lab.headers) as http, \
                http.stream("GET", f"{lab.url}/hpcbridge/api/events/stream") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                events.append(line)
                if line.startswith(": connected"):
                    got_connected.set()
                if job_holder.get("id") and line.startswith("data:") and \
                        job_holder["id"] in line:
                    got_job.set()
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert got_connected.wait(30), events
    r = lab.http.post("api/jobs", json={"app": "hello", "hpc": "slurm",
                                        "params": {"name": "SSE", "lines": 1, "delay": 0}})
    assert r.status_code == 201, r.text
    job_holder["id"] = r.json()["id"]
    # the event arrives while the stream is still open (not buffered until its end)
    assert got_job.wait(30), events
    slurm_middleware.wait_job(lab.api, job_holder["id"], timeout=WAIT)


def connections_to(port: int) -> int:
    """Established TCP connections from this machine to 127.0.0.1:port."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def test_closed_event_streams_do_not_stay_open_upstream(lab, slurm_middleware):
    """A browser that leaves (page reload) must not leave the extension's request to the
    middleware running for the hour of its request timeout."""
    deadline = time.monotonic() + 60
    while connections_to(slurm_middleware.port) and time.monotonic() < deadline:
        time.sleep(0.5)
    baseline = connections_to(slurm_middleware.port)
    for _ in range(3):
        with httpx.stream("GET", f"{lab.url}/hpcbridge/api/events/stream", timeout=30,
                          headers=lab.headers) as r:
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    break
    deadline = time.monotonic() + 45  # the middleware writes a keepalive every 15 s
    while connections_to(slurm_middleware.port) > baseline:
        assert time.monotonic() < deadline, "event streams still open at the middleware"
        time.sleep(0.5)
