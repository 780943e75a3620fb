"""Fixtures of the Jupyter extension's tests: plain `jupyter server` processes (token auth)
with the extension, pointed at the real middleware or at a fake one."""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest
from services import free_port

VENV_BIN = os.path.dirname(sys.executable)
JTOKEN = "jupyter-test-token"


def _clean_env(**extra) -> dict:
    """This process's environment without hpcbridge's, the hub's and Jupyter's settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HPCBRIDGE_", "JUPYTERHUB_", "JUPYTER_"))}
    env.update(extra)
    return env


@pytest.fixture
def clean_env():
    """clean_env(**extra): this process's environment without hpcbridge's, the hub's and
    Jupyter's settings, plus `extra`."""
    return _clean_env


class JupyterServer:
    """A `jupyter server` with the extension; `http` is based at /hpcbridge/, `api` at
    /hpcbridge/api/ (both with the server's token)."""

    def __init__(self, tmp: str, env: dict):
        self.root = os.path.join(tmp, "root")
        os.makedirs(self.root, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers = {"Authorization": f"token {JTOKEN}"}
        self.log_path = os.path.join(tmp, "jupyter.log")
        args = [os.path.join(VENV_BIN, "jupyter"), "server", "--no-browser",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
                f"--IdentityProvider.token={JTOKEN}", f"--ServerApp.root_dir={self.root}",
                "--ServerApp.port_retries=0", *(["--allow-root"] if os.getuid() == 0 else [])]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env=_clean_env(JUPYTER_CONFIG_DIR=os.path.join(tmp, "config"),
                              JUPYTER_RUNTIME_DIR=os.path.join(tmp, "runtime"),
                              JUPYTER_DATA_DIR=os.path.join(tmp, "data"), **env))
        self.http = httpx.Client(base_url=f"{self.url}/hpcbridge/", timeout=60,
                                 headers=self.headers)
        self.api = httpx.Client(base_url=f"{self.url}/hpcbridge/api/", timeout=60,
                                headers=self.headers)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, self.log()
            try:
                if httpx.get(f"{self.url}/api/status", timeout=2,
                             headers=self.headers).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.2)

    def write(self, rel: str, text: str) -> str:
        """A file under the server's root; its path."""
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def stop(self):
        self.http.close()
        self.api.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


@pytest.fixture
def jupyter_server(tmp_path):
    """jupyter_server(env): a Jupyter server with these HPCBRIDGE_* settings, stopped at
    the end of the test."""
    servers: list[JupyterServer] = []

    def start(env: dict) -> JupyterServer:
        servers.append(JupyterServer(str(tmp_path / f"jupyter{len(servers)}"), env))
        return servers[-1]
    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def lab(slurm_middleware, hub, tmp_path_factory):
    """alice's plain Jupyter server, the extension pointed at the Slurm middleware."""
    server = JupyterServer(str(tmp_path_factory.mktemp("lab")),
                           {"HPCBRIDGE_URL": slurm_middleware.url,
                            "HPCBRIDGE_TOKEN": hub.tokens["alice"]})
    yield server
    server.stop()


class _Answer(http.server.BaseHTTPRequestHandler):
    def _read_body(self) -> bytes:
        """The whole request body, before answering, as a real middleware reads it: the
        extension streams a POST's body chunked, and an answer sent before its end (the
        connection then closed) made the extension's upload fail now and then."""
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b""
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            body += self.rfile.read(size + 2)[:size]  # each chunk ends with CRLF
        self.rfile.readline()  # the CRLF after the last (empty) chunk: no trailers here
        return body

    def _answer(self):
        self._read_body()
        self.server.requests.append((self.command, self.path, dict(self.headers)))
        status, ctype, body = self.server.answers.get(
            self.path.split("?")[0], (404, "application/json", json.dumps(
                {"error": "not_found", "message": "no such thing", "details": None}).encode()))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_middleware():
    """A stand-in middleware: `answers` maps a path (/api/v1/…) to (status, type, body);
    `requests` records (method, path, headers) of what reached it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.answers, server.requests = {}, []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()
