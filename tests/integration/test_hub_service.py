"""The hub-managed deployment (issue #25, docs/deploy.md): a JupyterHub of this test's own
(its own ports, database, cookie secret and tokens; the stack's hub on :8000 is not touched)
starts `hpcbridge server` as a managed service, which takes its token and URL prefix from
the hub's environment; a maintainer started by the test drives the jobs on the stack's Slurm.

One scenario: alice's token through the hub's proxy (/services/hpcbridge/api/v1/jobs) runs
a job on Slurm; a Jupyter server's hpcbridge extension pointed at /services/hpcbridge/
lists it; a job runs on a second Slurm entry (`flaky`, reached through a TCP relay) until
the relay is shut mid-run; then the admin CLI, with the hub admin's token, shows `flaky`
unreachable with its error and the job stuck with its last event; alice is refused.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time

import httpx
import psutil
import pytest
from services import REPO, Services, free_port, remove_remote, slurm_hpc, wait_for_sshd

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(300)]
VENV_BIN = os.path.dirname(sys.executable)
BUNDLED_HELLO = os.path.join(REPO, "hpcbridge", "apps", "hello")
CHP = os.path.join(REPO, ".stack", "hub", "node_modules", ".bin", "configurable-http-proxy")


class Relay:
    """A TCP relay to sshd that can be shut: the HPC behind it becomes unreachable (every
    open connection cut, new ones refused)."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                return
            upstream.settimeout(None)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def shut(self) -> None:
        self.listener.close()
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def hub_config(tmp: str, ports: dict, tokens: dict, svc: Services) -> str:
    """The hub's config: the stack's authenticator and users, hpcbridge a managed service."""
    service = {
        "name": "hpcbridge", "url": f"http://127.0.0.1:{svc.port}", "cwd": svc.tmp,
        "command": [sys.executable, "-m", "hpcbridge.cli", "server", "--config",
                    svc.config_file],
        "environment": {"HOME": os.environ.get("HOME", svc.tmp)}, "display": False}
    text = f"""
c.JupyterHub.bind_url = "http://127.0.0.1:{ports['hub']}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{ports['hub_api']}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{ports['proxy_api']}"
c.ConfigurableHTTPProxy.command = [{CHP!r}]
c.ConfigurableHTTPProxy.pid_file = {os.path.join(tmp, 'proxy.pid')!r}
c.JupyterHub.db_url = "sqlite:///{os.path.join(tmp, 'jupyterhub.sqlite')}"
c.JupyterHub.cookie_secret_file = {os.path.join(tmp, 'cookie_secret')!r}
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {{"admin"}}
c.Authenticator.allowed_users = {{"alice", "admin"}}
c.JupyterHub.api_tokens = {json.dumps({t: name for name, t in tokens.items()})}
c.JupyterHub.services = [{service!r}]
c.JupyterHub.load_roles = [
    {{"name": "hpcbridge-service", "scopes": ["read:users"], "services": ["hpcbridge"]}},
    {{"name": "user", "scopes": ["self", "access:services!service=hpcbridge"]}},
]
"""
    path = os.path.join(tmp, "jupyterhub_config.py")
    with open(path, "w") as f:
        f.write(text)
    return path


def relay_known_hosts(known_hosts: str, port: int, tmp: str) -> str:
    """The login node's host keys under the relay's address."""
    with open(known_hosts) as f:
        keys = [line.split(None, 1)[1] for line in f if line.strip()]
    path = os.path.join(tmp, "known_hosts")
    with open(path, "w") as f:
        f.writelines(f"[127.0.0.1]:{port} {key}" for key in keys)
    return path


def hello_anywhere(tmp: str) -> str:
    """The bundled hello app, allowed on both Slurm entries."""
    folder = os.path.join(tmp, "apps", "hello")
    shutil.copytree(BUNDLED_HELLO, folder)
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    manifest.update(supported_hpc=["slurm", "flaky"], default_hpc="slurm")
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return folder


def wait_for(check, timeout: float, what: str, log=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (httpx.TransportError, ValueError, KeyError):
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} after {timeout} s\n{log()}"
        time.sleep(0.5)


@pytest.fixture
def managed(stack, tmp_path):
    """(hub URL, tokens, services, relay): a hub running the middleware as its service."""
    if not os.access(CHP, os.X_OK):
        pytest.skip(f"no configurable-http-proxy at {CHP} (the stack installs it: make stack)")
    wait_for_sshd(stack)
    tmp = str(tmp_path)
    ssh = stack["ssh"]
    relay = Relay(ssh["host"], ssh["port"])
    svc = Services(os.path.join(tmp, "svc"), stack, auth="static")
    os.makedirs(svc.tmp)
    flaky = slurm_hpc(stack, svc.run_id, id="flaky", port=relay.port, connect_timeout=2.0,
                      connect_retries=1, command_timeout=10.0,
                      known_hosts=relay_known_hosts(ssh["known_hosts"], relay.port, tmp))
    svc.hpcs = [slurm_hpc(stack, svc.run_id), flaky]
    svc.extra_config = "\n".join([  # the hub's environment says the rest
        "c.HPCBridgeServer.authenticator_class = 'hpcbridge.server.auth.HubAuthenticator'",
        f"c.Site.apps = [{hello_anywhere(tmp)!r}]"])
    svc.write_config()
    ports = {name: free_port() for name in ("hub", "hub_api", "proxy_api")}
    tokens = {name: secrets.token_hex(24) for name in ("alice", "admin")}
    with open(os.path.join(tmp, "hub.log"), "ab") as log:
        hub = subprocess.Popen([os.path.join(VENV_BIN, "jupyterhub"), "-f",
                                hub_config(tmp, ports, tokens, svc)], cwd=tmp, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    hub_log = lambda: open(os.path.join(tmp, "hub.log"), errors="replace").read()[-4000:]  # noqa: E731
    url = f"http://127.0.0.1:{ports['hub']}"
    try:
        wait_for(lambda: httpx.get(f"{url}/services/hpcbridge/api/v1/health",
                                   timeout=2).status_code == 200, 90, "service", hub_log)
        svc.start_maintainer()
        yield url, tokens, svc, relay
    finally:
        relay.shut()
        svc.stop()
        stop_hub(hub, svc.config_file)
        remove_remote(stack, f"hpcbridge-it/{svc.run_id}")


def stop_hub(hub: subprocess.Popen, config_file: str) -> None:
    """SIGTERM: the hub stops its service and proxy; a middleware it left is stopped by pid."""
    hub.terminate()
    try:
        hub.wait(30)
    except subprocess.TimeoutExpired:
        hub.kill()
        hub.wait()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if config_file in (proc.info["cmdline"] or []) and "server" in proc.info["cmdline"]:
            proc.terminate()


def cli(url: str, token: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpcbridge.cli", "admin", *args,
                           "--url", url, "--token", token], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "200"})


def test_hub_managed_service(managed, stack, tmp_path):
    url, tokens, svc, relay = managed
    service = f"{url}/services/hpcbridge/"
    alice = httpx.Client(base_url=service + "api/v1/", timeout=30,
                         headers={"Authorization": f"token {tokens['alice']}"})
    assert alice.get("me").json()["name"] == "alice"
    job = alice.post("jobs", json={"app": "hello", "hpc": "slurm",
                                   "params": {"lines": 2, "delay": 0.1}}).json()
    assert svc.wait_job(alice, job["id"])["status"] == "succeeded"
    assert job["id"] in listed_by_extension(tmp_path, service, tokens["alice"])

    # long enough to still run when the checks end on a loaded machine (scancel'd below)
    long = alice.post("jobs", json={"app": "hello", "hpc": "flaky",
                                    "params": {"lines": 60, "delay": 1}}).json()
    running = svc.wait_job(alice, long["id"], statuses=("running",))
    relay.shut()  # flaky is gone mid-run
    try:
        check_admin_cli(service, tokens, long["id"])
    finally:
        scancel(stack, running["scheduler_id"])
    r = cli(service, tokens["alice"], "hpcs")
    assert r.returncode == 2 and "admin" in r.stderr


def check_admin_cli(service: str, tokens: dict, stuck_id: str) -> None:
    def flaky_down():
        r = cli(service, tokens["admin"], "hpcs", "--json")
        health = {h["hpc"]["id"]: h for h in json.loads(r.stdout)}
        return health if health["flaky"]["hpc"]["reachable"] is False else None
    health = wait_for(flaky_down, 90, "flaky unreachable")
    assert health["flaky"]["last_error"] and health["slurm"]["hpc"]["reachable"] is True
    assert health["slurm"]["cycles"] > 0 and health["slurm"]["commands"].get("squeue")
    def stuck_listed():  # once it has been running for longer than --older-than
        r = cli(service, tokens["admin"], "stuck", "--older-than", "1", "--json")
        listed = {s["job"]["id"]: s for s in json.loads(r.stdout)}
        return listed if stuck_id in listed else None
    stuck = wait_for(stuck_listed, 30, "the job listed as stuck")
    assert stuck[stuck_id]["job"]["status"] == "running"
    assert stuck[stuck_id]["last_event"]["type"] == "waiting"
    assert "flaky" in stuck[stuck_id]["last_event"]["message"]
    tables = cli(service, tokens["admin"], "hpcs").stdout + \
        cli(service, tokens["admin"], "stuck", "--older-than", "1").stdout
    assert "flaky" in tables and "NO" in tables and stuck_id in tables, tables
    users = json.loads(cli(service, tokens["admin"], "users", "--json").stdout)
    assert {u["user"]: u for u in users}["alice"]["jobs"]["succeeded"] == 1


def listed_by_extension(tmp_path, service: str, token: str) -> set[str]:
    """The job ids alice's Jupyter server (the panel's backend) lists through the hub."""
    root, jtoken, port = tmp_path / "lab", secrets.token_hex(8), free_port()
    root.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HPCBRIDGE_", "JUPYTERHUB_", "JUPYTER_"))}
    env.update(HPCBRIDGE_URL=service, HPCBRIDGE_TOKEN=token,
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    with open(tmp_path / "jupyter.log", "ab") as log:
        proc = subprocess.Popen(
            [os.path.join(VENV_BIN, "jupyter"), "server", "--no-browser",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
             f"--IdentityProvider.token={jtoken}", f"--ServerApp.root_dir={root}",
             *(["--allow-root"] if os.getuid() == 0 else [])],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        jobs = wait_for(lambda: httpx.get(
            f"http://127.0.0.1:{port}/hpcbridge/api/jobs", timeout=10,
            headers={"Authorization": f"token {jtoken}"}).json()["jobs"], 60, "jupyter",
            lambda: (tmp_path / "jupyter.log").read_text(errors="replace")[-3000:])
        return {j["id"] for j in jobs}
    finally:
        proc.terminate()
        proc.wait(20)


def scancel(stack: dict, scheduler_id: str | None) -> None:
    """The job left running on Slurm behind the shut relay."""
    if not scheduler_id:
        return
    ssh = stack["ssh"]
    subprocess.run(["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                    "-o", f"UserKnownHostsFile={ssh['known_hosts']}", "-i", ssh["key"],
                    "-p", str(ssh["port"]), f"{ssh['user']}@{ssh['host']}", "scancel",
                    scheduler_id], capture_output=True, timeout=60)
