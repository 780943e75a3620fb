"""The Jupyter server extension in JupyterHub-spawned single-user servers for alice and bob,
reached through the hub's proxy with the users' own tokens, forwarding to a middleware on the
hub-registered service URL (one test at a time may hold that port: `service_port_lock`)."""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse

import httpx
import pytest
from services import Services, remove_remote, slurm_hpc, wait_for_sshd

pytestmark = [pytest.mark.stack, pytest.mark.slow]

WAIT = 240


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


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


def test_through_jupyterhub_with_the_users_tokens(stack, hub, tmp_path, request, clean_env):
    wait_for_sshd(stack)
    request.getfixturevalue("ssh_target")
    request.getfixturevalue("redis_url")
    port = urlparse(hub.service_url).port
    users = HubUsers(hub)
    as_user = {who: httpx.Client(base_url=f"{hub.url}/user/{who}/hpcbridge/api/",
                                 timeout=60, headers=hub.headers(who))
               for who in ("alice", "bob")}
    t0 = time.monotonic()
    try:
        with service_port_lock(stack, port):
            env = spawned_server_env(users, hub)
            spawned = time.monotonic() - t0
            # no middleware yet: the extension says so, as JSON, through the hub's proxy
            r = as_user["alice"].get("me")
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "middleware_unreachable"
            assert hub.service_url in r.json()["message"]

            services = Services(str(tmp_path), stack, auth="hub", port=port)
            services.hpcs = [slurm_hpc(stack, services.run_id)]
            services.start()
            try:
                job = alices_job(as_user["alice"], services, hub)
                bob_cannot_see(as_user["bob"], hub, job["id"])
                # a kernel of alice's server (same environment) reaches the middleware too
                out = subprocess.run(
                    [sys.executable, "-c", "from hpcbridge import Client; c = Client(); "
                     f"print(c.me().name, c.job('{job['id']}').status)"],
                    capture_output=True, text=True, timeout=120, env=clean_env(**{
                        k: env[k] for k in ("HPCBRIDGE_URL", "JUPYTERHUB_API_TOKEN")}))
                assert out.stdout.split() == ["alice", "succeeded"], out.stderr
            finally:
                services.stop()
                remove_remote(stack, f"hpcbridge-it/{services.run_id}")
    finally:
        for http in as_user.values():
            http.close()
        users.stop_started()
    print(f"spawn of alice+bob: {spawned:.1f} s; whole test {time.monotonic() - t0:.1f} s")


def spawned_server_env(users: HubUsers, hub) -> dict:
    """Spawn alice's and bob's servers; alice's has the hub-registered middleware URL and
    her token: her server's environment."""
    alice_server = users.spawn("alice", "bob")["alice"]
    pid = (alice_server.get("state") or {}).get("pid")
    assert pid, alice_server  # SimpleLocalProcessSpawner keeps the pid
    env = proc_environ(pid)
    assert env.get("HPCBRIDGE_URL") == hub.service_url, sorted(env)
    assert env.get("JUPYTERHUB_API_TOKEN")
    return env


def alices_job(alice: httpx.Client, services: Services, hub) -> dict:
    """A job alice runs through her server, checked there and at the middleware."""
    r = alice.get("me")
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "alice"
    r = alice.post("jobs", json={"app": "hello", "hpc": "slurm",
                                 "params": {"name": "Hub", "lines": 2, "delay": 0}})
    assert r.status_code == 201, r.text
    assert r.json()["user"] == "alice"
    job = services.wait_job(alice, r.json()["id"], timeout=WAIT)
    assert job["status"] == "succeeded", job
    r = alice.get(f"jobs/{job['id']}/results/result/greeting.txt")
    assert r.status_code == 200 and r.text == "Hello, Hub!\n"
    logs = alice.get(f"jobs/{job['id']}/logs").json()
    assert logs["data"] == "[1/2] Hello, Hub!\n[2/2] Hello, Hub!\n"
    # the middleware itself says the job is alice's
    with services.client(hub.tokens["alice"]) as direct:
        assert direct.get(f"jobs/{job['id']}").json()["user"] == "alice"
    return job


def bob_cannot_see(bob: httpx.Client, hub, job_id: str) -> None:
    """bob, through his own server, cannot see alice's job, nor open her server."""
    assert bob.get("me").json()["name"] == "bob"
    r = bob.get(f"jobs/{job_id}")
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found"
    assert bob.get(f"jobs/{job_id}/logs").status_code == 404
    assert job_id not in {j["id"] for j in bob.get("jobs").json()["jobs"]}
    r = httpx.get(f"{hub.url}/user/alice/hpcbridge/api/jobs/{job_id}",
                  headers=hub.headers("bob"), timeout=60, follow_redirects=False)
    assert r.status_code == 403, (r.status_code, r.text)
    assert "Hello" not in r.text
