"""The Jupyter server extension (`hpcbridge.jupyter_ext`) in real Jupyter servers.

* A JupyterHub-spawned single-user server for alice (and bob), reached through the hub's
  proxy with the users' own tokens, forwarding to a middleware on the hub-registered service
  URL (port 8710: one test at a time may hold it, see `service_port_lock`).
* A plain `jupyter server` (token auth) for the extension's own endpoints: local upload and
  download, streaming both ways, and the middleware being down.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse

import httpx
import pytest
from services import Services, free_port, remove_remote, slurm_hpc, wait_for_sshd

pytestmark = [pytest.mark.stack, pytest.mark.slow]

VENV_BIN = os.path.dirname(sys.executable)
WAIT = 240
JTOKEN = "jupyter-test-token"



def port_open(port: int) -> bool:
    import socket
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_job(get, path: str, statuses=("succeeded", "failed", "cancelled")) -> dict:
    deadline = time.monotonic() + WAIT
    while True:
        r = get(path)
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.5)


# ============================================================================================
# A plain Jupyter server with the extension
# ============================================================================================
class JupyterServer:
    def __init__(self, tmp, env: dict):
        self.root = os.path.join(tmp, "root")
        os.makedirs(self.root, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("HPCBRIDGE_", "JUPYTERHUB_", "JUPYTER_"))}
        base.update(JUPYTER_CONFIG_DIR=os.path.join(tmp, "config"),
                    JUPYTER_RUNTIME_DIR=os.path.join(tmp, "runtime"),
                    JUPYTER_DATA_DIR=os.path.join(tmp, "data"), **env)
        self.log_path = os.path.join(tmp, "jupyter.log")
        args = [os.path.join(VENV_BIN, "jupyter"), "server", "--no-browser",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
                f"--IdentityProvider.token={JTOKEN}", f"--ServerApp.root_dir={self.root}",
                "--ServerApp.port_retries=0"]
        if os.getuid() == 0:
            args.append("--allow-root")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, env=base, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.http = httpx.Client(base_url=f"{self.url}/hpcbridge/", timeout=60,
                                 headers={"Authorization": f"token {JTOKEN}"})
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.log()
            try:
                if httpx.get(f"{self.url}/api/status", timeout=2,
                             headers={"Authorization": f"token {JTOKEN}"}).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.2)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def stop(self):
        self.http.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()



@pytest.fixture(scope="module")
def mw(slurm_middleware):
    return slurm_middleware

@pytest.fixture(scope="module")
def lab(mw, hub, tmp_path_factory):
    """alice's plain Jupyter server, the extension pointed at `mw` with her token."""
    server = JupyterServer(str(tmp_path_factory.mktemp("lab")),
                           {"HPCBRIDGE_URL": mw.url, "HPCBRIDGE_TOKEN": hub.tokens["alice"]})
    yield server
    server.stop()


def test_extension_is_enabled_in_the_venv():
    out = subprocess.run([os.path.join(VENV_BIN, "jupyter"), "server", "extension", "list"],
                         capture_output=True, text=True, timeout=120)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    assert re.search(r"hpcbridge\.jupyter_ext\s+enabled", text), text
    assert re.search(r"hpcbridge\.jupyter_ext\s+\S*\s*OK", text), text


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


def test_local_upload_job_and_local_download(lab):
    data = os.path.join(lab.root, "inputs", "survey")
    os.makedirs(os.path.join(data, "raw"))
    with open(os.path.join(data, "sites.csv"), "w") as f:
        f.write("id,lat,lon\n1,40.1,-88.2\n")
    with open(os.path.join(data, "raw", "day1.txt"), "w") as f:
        f.write("x" * 5000)
    os.symlink("/etc/passwd", os.path.join(data, "link"))  # never sent along

    r = lab.http.post("local/upload", json={"path": "inputs/survey"})
    assert r.status_code == 201, r.text
    upload = r.json()
    assert upload["name"] == "survey.zip" and upload["id"]

    r = lab.http.post("api/jobs", json={"app": "hello", "hpc": "slurm", "upload": upload["id"],
                                        "params": {"name": "Lab", "lines": 1, "delay": 0}})
    assert r.status_code == 201, r.text
    assert r.headers["location"].endswith(r.json()["id"])
    job = wait_job(lab.http.get, f"api/jobs/{r.json()['id']}")
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
    assert lab.http.post("local/upload", json={"path": "../../etc"}).status_code == 403
    r = lab.http.post("local/upload", json={"path": "nothing-here"})
    assert r.status_code == 404 and "nothing-here" in r.json()["message"]
    assert lab.http.post("local/upload", content=b"[1,").status_code == 400
    assert lab.http.post("local/download", json={"job_id": "../x"}).status_code == 422
    r = lab.http.post("local/download", json={"job_id": "0" * 32})
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_large_upload_streams_through(lab, tmp_path):
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


def test_refused_upload_relays_the_middleware_answer(mw, tmp_path):
    """The middleware refuses a body before reading it (bad token): the browser gets the
    middleware's 401, not a 502 'Stream closed', and the server stays healthy."""
    server = JupyterServer(str(tmp_path), {"HPCBRIDGE_URL": mw.url,
                                           "HPCBRIDGE_TOKEN": "expired-token"})
    try:
        r = server.http.post("api/uploads", params={"name": "big.bin"},
                             content=os.urandom(1 << 20) * 8)
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "unauthorized"
        os.makedirs(os.path.join(server.root, "d"))
        with open(os.path.join(server.root, "d", "f.txt"), "w") as f:
            f.write("x")
        r = server.http.post("local/upload", json={"path": "d"})
        assert r.status_code == 401, r.text
        assert server.http.get("api/me").status_code == 401
    finally:
        server.stop()


def test_event_stream_is_forwarded_as_it_happens(lab):
    events: list[str] = []
    got_connected = threading.Event()
    got_job = threading.Event()
    job_holder: dict = {}

    def listen():
        with httpx.Client(timeout=httpx.Timeout(60, read=90),
                          headers={"Authorization": f"token {JTOKEN}"}) as http, \
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
    wait_job(lab.http.get, f"api/jobs/{job_holder['id']}")


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


def test_closed_event_streams_do_not_stay_open_upstream(lab, mw):
    """A browser that leaves (page reload) must not leave the extension's request to the
    middleware running for the hour of its request timeout."""
    deadline = time.monotonic() + 60
    while connections_to(mw.port) and time.monotonic() < deadline:
        time.sleep(0.5)
    baseline = connections_to(mw.port)
    for _ in range(3):
        with httpx.stream("GET", f"{lab.url}/hpcbridge/api/events/stream", timeout=30,
                          headers={"Authorization": f"token {JTOKEN}"}) as r:
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    break
    deadline = time.monotonic() + 45  # the middleware writes a keepalive every 15 s
    while connections_to(mw.port) > baseline:
        assert time.monotonic() < deadline, "event streams still open at the middleware"
        time.sleep(0.5)


def test_middleware_down_is_a_clear_503(tmp_path):
    down = f"http://127.0.0.1:{free_port()}"
    server = JupyterServer(str(tmp_path), {"HPCBRIDGE_URL": down, "HPCBRIDGE_TOKEN": "t"})
    try:
        os.makedirs(os.path.join(server.root, "d"))
        with open(os.path.join(server.root, "d", "f.txt"), "w") as f:
            f.write("x")
        for method, path, body in [("GET", "api/me", None),
                                   ("POST", "api/jobs", {"app": "hello"}),
                                   ("GET", "api/events/stream", None),
                                   ("POST", "local/upload", {"path": "d"}),
                                   ("POST", "local/download", {"job_id": "a" * 32})]:
            r = server.http.request(method, path, json=body)
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/json")
            error = r.json()
            assert error["error"] == "middleware_unreachable", error
            assert "unreachable" in error["message"] and down in error["message"], error
        assert server.proc.poll() is None
    finally:
        server.stop()


# ============================================================================================
# Through JupyterHub: spawned single-user servers, the hub's proxy, users' own tokens
# ============================================================================================
@contextlib.contextmanager
def service_port_lock(stack: dict, port: int, timeout: float = 600):
    """Only one test at a time runs the middleware on the hub-registered service port."""
    path = os.path.join(stack.get("stack_dir") or "/tmp", f"service-port-{port}.lock")
    with open(path, "a+") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, f"{path} held for {timeout} s"
                time.sleep(0.5)
        try:
            # someone not taking the lock may still be on the port: wait for it to go
            while port_open(port):
                assert time.monotonic() < deadline, f"port {port} stays busy"
                time.sleep(0.5)
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class HubUsers:
    """Spawns single-user servers through the hub API and stops the ones it started."""

    def __init__(self, hub):
        self.hub = hub
        self.admin = httpx.Client(base_url=hub.api_url + "/", timeout=60,
                                  headers=hub.headers("admin"))
        self.started: list[str] = []

    def model(self, user: str) -> dict:
        r = self.admin.get(f"users/{user}")
        assert r.status_code == 200, r.text
        return r.json()

    def spawn(self, *names: str) -> dict[str, dict]:
        """Start the users' servers (together: the hub answers a POST once the server is
        up, ~6 s) unless they run already; their server models once ready."""
        to_start = []
        for user in names:
            server = self.model(user).get("servers", {}).get("")
            if not server:
                to_start.append(user)
        errors = []

        def post(user):
            r = self.admin.post(f"users/{user}/server")
            if r.status_code not in (201, 202):
                errors.append(f"{user}: {r.status_code} {r.text}")
        threads = [threading.Thread(target=post, args=(u,)) for u in to_start]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.started += to_start
        assert not errors, errors
        servers, deadline = {}, time.monotonic() + 120
        for user in names:
            while True:
                server = self.model(user).get("servers", {}).get("")
                if server and server.get("ready") and not server.get("pending"):
                    servers[user] = server
                    break
                assert time.monotonic() < deadline, f"{user}'s server not ready: {server}"
                time.sleep(0.3)
        return servers

    def stop_started(self):
        for user in self.started:
            r = self.admin.delete(f"users/{user}/server")
            if r.status_code not in (202, 204, 400, 404):
                print(f"stopping {user}'s server: {r.status_code} {r.text}")
        deadline = time.monotonic() + 60
        for user in self.started:
            while self.model(user).get("servers", {}).get("") and time.monotonic() < deadline:
                time.sleep(0.5)
        self.admin.close()


def proc_environ(pid: int) -> dict:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item]
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def test_through_jupyterhub_with_the_users_tokens(stack, hub, redis_url, tmp_path, request):
    wait_for_sshd(stack)
    request.getfixturevalue("ssh_target")
    port = urlparse(hub.service_url).port
    users = HubUsers(hub)
    as_user = {who: httpx.Client(base_url=f"{hub.url}/user/{who}/hpcbridge/api/",
                                 timeout=60, headers=hub.headers(who))
               for who in ("alice", "bob")}
    t0 = time.monotonic()
    try:
        with service_port_lock(stack, port):
            alice_server = users.spawn("alice", "bob")["alice"]
            spawned = time.monotonic() - t0

            # the spawned server has the hub-registered middleware URL and alice's token
            pid = (alice_server.get("state") or {}).get("pid")
            assert pid, alice_server  # SimpleLocalProcessSpawner keeps the pid
            env = proc_environ(pid)
            assert env.get("HPCBRIDGE_URL") == hub.service_url, sorted(env)
            assert env.get("JUPYTERHUB_API_TOKEN")

            # no middleware yet: the extension says so, as JSON, through the hub's proxy
            r = as_user["alice"].get("me")
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "middleware_unreachable"
            assert hub.service_url in r.json()["message"]

            services = Services(str(tmp_path), stack, auth="hub", port=port)
            services.hpcs = [slurm_hpc(stack, services.run_id)]
            services.start()
            try:
                r = as_user["alice"].get("me")
                assert r.status_code == 200, r.text
                assert r.json()["name"] == "alice"
                assert as_user["bob"].get("me").json()["name"] == "bob"

                r = as_user["alice"].post("jobs", json={
                    "app": "hello", "hpc": "slurm",
                    "params": {"name": "Hub", "lines": 2, "delay": 0}})
                assert r.status_code == 201, r.text
                job = r.json()
                assert job["user"] == "alice"
                job = wait_job(as_user["alice"].get, f"jobs/{job['id']}")
                assert job["status"] == "succeeded", job
                r = as_user["alice"].get(f"jobs/{job['id']}/results/result/greeting.txt")
                assert r.status_code == 200 and r.text == "Hello, Hub!\n"
                logs = as_user["alice"].get(f"jobs/{job['id']}/logs").json()
                assert logs["data"] == "[1/2] Hello, Hub!\n[2/2] Hello, Hub!\n"

                # the middleware itself says the job is alice's
                with services.client(hub.tokens["alice"]) as direct:
                    assert direct.get(f"jobs/{job['id']}").json()["user"] == "alice"

                # bob, through his own server, cannot see it
                r = as_user["bob"].get(f"jobs/{job['id']}")
                assert r.status_code == 404, r.text
                assert r.json()["error"] == "not_found"
                assert as_user["bob"].get(f"jobs/{job['id']}/logs").status_code == 404
                assert job["id"] not in {j["id"] for j in
                                         as_user["bob"].get("jobs").json()["jobs"]}
                # and bob's token does not open alice's server
                r = httpx.get(f"{hub.url}/user/alice/hpcbridge/api/jobs/{job['id']}",
                              headers=hub.headers("bob"), timeout=60, follow_redirects=False)
                assert r.status_code == 403, (r.status_code, r.text)
                assert "Hello" not in r.text

                # a kernel of alice's server (same environment) reaches the middleware too
                kernel_env = {k: v for k, v in os.environ.items()
                              if not k.startswith(("HPCBRIDGE_", "JUPYTERHUB_"))}
                kernel_env.update({k: env[k] for k in ("HPCBRIDGE_URL",
                                                       "JUPYTERHUB_API_TOKEN")})
                out = subprocess.run(
                    [sys.executable, "-c", "from hpcbridge import Client; c = Client(); "
                     f"print(c.me().name, c.job('{job['id']}').status)"],
                    capture_output=True, text=True, timeout=120, env=kernel_env)
                assert out.stdout.split() == ["alice", "succeeded"], out.stderr
            finally:
                services.stop()
                remove_remote(stack, f"hpcbridge-it/{services.run_id}")
    finally:
        for http in as_user.values():
            http.close()
        users.stop_started()
    print(f"spawn of alice+bob: {spawned:.1f} s; whole test {time.monotonic() - t0:.1f} s")

