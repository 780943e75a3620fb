"""CyberGIS-Compute compatibility (issue #23) end to end: the unmodified PyPI client
`cybergis-compute-client` 0.2.6 (its own venv, stack/cybergis-client.sh) drives a real
middleware + maintainer on the stack's Slurm, with the stack's JupyterHub tokens.

alice logs in, lists HPCs and apps, creates, sets, submits a job of the bundled `hello` app,
follows its events to JOB_ENDED, reads its logs and result listing; a long job is cancelled
and ends JOB_FAILED; rule-breaking params and Slurm inputs are refused. bob cannot read, set,
submit or cancel alice's job; a token for another hub host is refused. The native API sees
the same jobs. Drafts are private and submitted once; data comes as an hpcbridge upload; the
client also works through the hub's proxy (the middleware as the hub's service).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import time

import httpx
import pytest
from services import Services

pytestmark = [pytest.mark.stack, pytest.mark.slow]

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
DRIVER = os.path.join(HERE, "cybergis_driver.py")
CG_PYTHON = os.path.join(REPO, ".stack", "cybergis-venv", "bin", "python")


@pytest.fixture(scope="module")
def cg_python():
    """The client's own venv (installed on first use; quick when already there)."""
    done = subprocess.run(["bash", os.path.join(REPO, "stack", "cybergis-client.sh")],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"stack/cybergis-client.sh failed:\n{done.stderr[-3000:]}")
    return CG_PYTHON


def run_driver(cg_python, services, who: str, token: str, cwd, hub_host: str,
               timeout: float = 300, **env) -> dict:
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd),
               "TERM": "dumb", "JUPYTERHUB_API_TOKEN": token, "CG_HOST": "127.0.0.1",
               "CG_PORT": str(services.port), "CG_SUFFIX": "v2", "CG_HUB": hub_host,
               "CG_APP": "hello", "CG_HPC": "slurm", **env}
    done = subprocess.run([cg_python, DRIVER, who], cwd=cwd, env=environ, text=True,
                          capture_output=True, timeout=timeout)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise AssertionError(f"driver {who} exited {done.returncode}\nstdout:\n"
                             f"{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}\n"
                             f"middleware log:\n{services.log('server')}")
    return json.loads(lines[-1][len("RESULT "):])


def check_alice(r: dict) -> None:
    assert r["username"] == "alice@127.0.0.1:8000"
    assert "slurm" in r["hpcs"]
    hello = r["git"]["hello"]
    assert hello["param_rules"]["lines"]["max"] == 100
    assert hello["slurm_input_rules"]["cpu_per_task"]["max"] == 2  # cpus, in Slurm's name
    assert "slurm" in hello["supported_hpc"]
    # the first job: ended well, followed by the client to JOB_ENDED
    assert r["job_failed"] is False
    assert r["events"][0] == "JOB_QUEUED" and r["events"][-1] == "JOB_ENDED", r["events"]
    assert "JOB_RUNNING" in r["events"] or "JOB_INIT" in r["events"]
    status = r["status"]
    assert status["slurmId"] and status["hpc"] == "slurm" and status["isFailed"] is False
    assert status["param"] == {"name": "cybergis", "lines": 3, "delay": 0.2}  # "3" → 3
    assert status["slurm"]["time"] == "00:02:00" and status["slurm"]["cpu_per_task"] == 1
    assert status["userId"] == "alice@127.0.0.1:8000"
    stdout = [log["message"] for log in r["logs"] if log.get("stream") == "stdout"]
    assert stdout and "[3/3] Hello, cybergis!" in stdout[0]
    assert r["results"][0] == "/" and "/result/greeting.txt" in r["results"]
    assert r["job_id"] in r["listed"] and r["job_id"] in r["folders"]
    assert "/api/v1/jobs/" in r["globus"] and "Globus is not available" in r["globus"]
    # the long job: running, cancelled, shown by the client as a failure
    assert "JOB_RUNNING" in r["long_before_cancel"], r["long_before_cancel"]
    assert r["long_failed"] is True
    assert r["long_last_event"]["type"] == "JOB_FAILED"
    assert r["long_last_event"]["message"].startswith("cancelled")
    # the manifest's rules, in CyberGIS's words
    assert "validation_error" in r["bad_param"] and "param.lines" in r["bad_param"]
    assert "at most 100" in r["bad_param"]
    assert "slurm.cpu_per_task" in r["bad_slurm"] and "at most 2" in r["bad_slurm"]
    assert "localExecutableFolder" in r["bad_submit"]


def check_native(services, hub, r: dict) -> None:
    """The same jobs through hpcbridge's own API: one store, one set of rules."""
    with services.client(hub.tokens["alice"]) as http:
        job = http.get(f"jobs/{r['job_id']}").json()
        assert job["status"] == "succeeded" and job["user"] == "alice"
        assert job["app"] == "hello" and job["resources"] == {"time": 2, "cpus": 1}
        assert http.get(f"jobs/{r['long_id']}").json()["status"] == "cancelled"
        listing = http.get(f"jobs/{r['job_id']}/results").json()
        assert "result/greeting.txt" in [e["path"] for e in listing]
    with services.client(hub.tokens["bob"]) as http:
        assert http.get(f"jobs/{r['job_id']}").status_code == 404


def test_cybergis_client_end_to_end(cg_python, slurm_middleware, hub, tmp_path):
    services = slurm_middleware
    # alice's host with a scheme, bob's without: the client accepts both spellings
    (tmp_path / "alice").mkdir()
    r = run_driver(cg_python, services, "alice", hub.tokens["alice"], tmp_path / "alice",
                   "http://127.0.0.1:8000")
    check_alice(r)
    assert (tmp_path / "alice" / "cybergis_compute_user.json").exists()  # the login file
    check_native(services, hub, r)

    (tmp_path / "bob").mkdir()
    b = run_driver(cg_python, services, "bob", hub.tokens["bob"], tmp_path / "bob",
                   "127.0.0.1:8000", timeout=60, CG_VICTIM=r["job_id"])
    assert b["username"] == "bob@127.0.0.1:8000"
    for route in ("get", "events", "logs", "results", "cancel", "set", "submit", "folder",
                  "globus"):
        assert b[route] and "not_found" in b[route], (route, b[route])
        assert "cybergis" not in b[route]  # nothing of alice's job in the answer
    assert r["job_id"] not in b["listed"]

    (tmp_path / "foreign").mkdir()
    f = run_driver(cg_python, services, "foreign-host", hub.tokens["alice"],
                   tmp_path / "foreign", "127.0.0.1:8000", timeout=60)
    assert f["username"] is None  # the client's login failed
    for route in ("user", "create"):
        assert "forbidden" in f[route] and "hub.elsewhere.example:8000" in f[route]

    log = services.log("server")
    for who in ("alice", "bob"):
        assert hub.tokens[who] not in log  # tokens never reach the log


def test_errors_are_json_with_a_string_error(slurm_middleware, hub):
    """Whatever goes wrong, the body has a string `error` (what the client checks)."""
    base = f"{slurm_middleware.url}/v2"
    cases = [("GET", "/user", b"not json"), ("GET", "/user", b"{}"),
             ("GET", "/user", json.dumps({"jupyterhubApiToken": "%%%"}).encode()),
             ("GET", "/job/0123", b"{}"), ("DELETE", "/hpc", b""),
             ("GET", "/no-such-route", b""),
             ("PUT", f"/job/{'a' * 32}", b'{"param": "' + b"x" * (4 << 20) + b'"}')]
    with httpx.Client(timeout=30) as http:
        for method, path, body in cases:
            resp = http.request(method, base + path, content=body,
                                headers={"Content-Type": "application/json"})
            data = resp.json()
            assert isinstance(data.get("error"), str) and resp.status_code >= 400, (path, data)
        assert http.get(base + "/hpc").json()["hpc"]["slurm"]["ip"] is None  # no host shown


def test_drafts_are_private_and_submitted_once(slurm_middleware, hub):
    """A created, set job (a draft in Redis) is its owner's alone; two submits at once make
    one hpcbridge job under the draft's id (the other is told it is already submitted)."""
    import base64
    from concurrent.futures import ThreadPoolExecutor

    base = f"{slurm_middleware.url}/v2"

    def token(who: str) -> dict:
        return {"jupyterhubApiToken": base64.b64encode(
            f"127.0.0.1:8000@{hub.tokens[who]}".encode()).decode()}

    def call(method: str, path: str, who: str, **body) -> dict:
        with httpx.Client(timeout=30) as http:
            return http.request(method, base + path, json={**token(who), **body}).json()

    draft = call("POST", "/job", "alice", hpc="slurm")
    jid = draft["id"]
    assert draft["events"] == [] and draft["userId"] == "alice@127.0.0.1:8000"
    git = {"type": "git", "gitId": "hello"}
    # data: an hpcbridge upload of one's own; Globus, or someone else's upload, is refused
    uploads = {}
    for who in ("alice", "bob"):
        with slurm_middleware.client(hub.tokens[who]) as http:
            uploads[who] = http.post("uploads?name=data.txt", content=b"data\n").json()["id"]
    globus = call("PUT", f"/job/{jid}", "alice", localExecutableFolder=git,
                  localDataFolder={"type": "globus", "endpoint": "e", "path": "/p"})
    assert globus["error"] == "validation_error" and "/api/v1/uploads" in globus["message"]
    theirs = call("PUT", f"/job/{jid}", "alice", localExecutableFolder=git,
                  localDataFolder={"type": "upload", "id": uploads["bob"]})
    assert theirs["messages"] == ["localDataFolder unknown upload"], theirs
    set_ = call("PUT", f"/job/{jid}", "alice", param={"lines": 1, "delay": 0},
                localExecutableFolder=git,
                localDataFolder={"type": "upload", "id": uploads["alice"]})
    assert set_["param"] == {"lines": 1, "delay": 0}
    for method, path in (("GET", ""), ("PUT", ""), ("POST", "/submit"), ("PUT", "/cancel"),
                         ("GET", "/events")):
        assert call(method, f"/job/{jid}{path}", "bob")["error"] == "not_found", path
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: call("POST", f"/job/{jid}/submit", "alice"),
                                range(2)))
    submitted = [a for a in answers if "error" not in a]
    refused = [a for a in answers if "error" in a]
    assert len(submitted) == 1 and submitted[0]["id"] == jid, answers
    assert [a["error"] for a in refused] == ["conflict"], answers
    assert call("PUT", f"/job/{jid}", "alice", param={})["error"] == "conflict"
    with slurm_middleware.client(hub.tokens["alice"]) as http:
        job = http.get(f"jobs/{jid}").json()
        assert job["app"] == "hello" and job["upload"] == uploads["alice"]
        assert [j["id"] for j in http.get("jobs?limit=1000").json()["jobs"]].count(jid) == 1
    cancel = call("PUT", f"/job/{jid}/cancel", "alice")
    assert "error" not in cancel or cancel["error"] == "conflict"  # it may have ended


class ServiceOfTheHub(Services):
    """The middleware as the stack's hub service: /services/hpcbridge/ on port 8710."""

    @property
    def api(self) -> str:
        return f"{self.url}/services/hpcbridge/api/v1"


@contextlib.contextmanager
def service_port(stack: dict, port: int = 8710, timeout: float = 300):
    """The hub-registered service port, one test at a time (the lock the Jupyter extension's
    hub tests take too)."""
    with open(os.path.join(stack["stack_dir"], f"service-port-{port}.lock"), "a+") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, f"service port {port} busy for {timeout} s"
                time.sleep(0.5)
        try:
            while True:  # someone without the lock may still be on the port
                with socket.socket() as probe:
                    probe.settimeout(1)
                    if probe.connect_ex(("127.0.0.1", port)) != 0:
                        break
                assert time.monotonic() < deadline, f"port {port} stays busy"
                time.sleep(0.5)
            yield port
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def test_a_notebook_reaches_it_through_the_hubs_proxy(cg_python, stack, hub, redis_url,
                                                       tmp_path):
    """CyberGISCompute(url=<hub>, port=8000, suffix="services/hpcbridge/v2"): the hub's proxy
    forwards the client's GETs with their JSON bodies."""
    with service_port(stack) as port:
        services = ServiceOfTheHub(str(tmp_path / "mw"), stack, auth="hub", port=port,
                                   extra_config="c.HPCBridgeServer.base_url = "
                                                "'/services/hpcbridge/'")
        services.start(maintainer=False)
        try:
            (tmp_path / "nb").mkdir()
            hub_port = hub.url.rsplit(":", 1)[1]
            r = run_driver(cg_python, services, "proxy", hub.tokens["alice"], tmp_path / "nb",
                           hub.url, timeout=60, CG_PORT=hub_port, CG_HPC="local",
                           CG_SUFFIX="services/hpcbridge/v2")
        finally:
            services.stop()
    assert r["username"] == "alice@127.0.0.1:8000"
    assert "hello" in r["git"] and r["param"] == {"lines": 1}
    assert "not_found" in r["after_cancel"]
