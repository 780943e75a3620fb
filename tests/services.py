"""Start the real hpcbridge services (middleware + maintainer) for a test, against the
real stack (Redis, sshd + Slurm, JupyterHub) or on embedded defaults.

Used by fixtures: `Services(tmp_path, stack).start()`; every process is stopped at the end.

The database: SQLite in the data dir by default. With HPCBRIDGE_TEST_DB=postgresql every
Services gets a new database of its own on the stack's PostgreSQL (`make test-pg`), which the
services migrate at start as in production, dropped at stop().
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

import httpx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_DBS = ("sqlite", "postgresql")


def test_db() -> str:
    """The database the test services run on: HPCBRIDGE_TEST_DB, "sqlite" by default."""
    name = os.environ.get("HPCBRIDGE_TEST_DB", "").strip().lower() or "sqlite"
    if name not in TEST_DBS:
        raise RuntimeError(f"HPCBRIDGE_TEST_DB={name!r}: expected one of {TEST_DBS}")
    return name


def read_stack() -> dict:
    """.stack/stack.json (HPCBRIDGE_STACK_JSON), for services started without a stack."""
    path = os.environ.get("HPCBRIDGE_STACK_JSON", os.path.join(REPO, ".stack", "stack.json"))
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        raise RuntimeError(f"HPCBRIDGE_TEST_DB=postgresql needs the test stack ({path}): "
                           "run `make stack`") from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_hpc(stack: dict, run_id: str, **overrides) -> dict:
    ssh = stack["ssh"]
    hpc = {"id": "slurm", "name": "Test Slurm", "scheduler": "slurm", "host": ssh["host"],
           "port": ssh["port"], "user": ssh["user"], "key_file": ssh["key"],
           "known_hosts": ssh["known_hosts"], "work_root": f"~/hpcbridge-it/{run_id}",
           "partitions": [stack.get("slurm", {}).get("partition", "debug")],
           "capacity": 50, "poll_interval": 1.0, "cleanup": "never"}
    hpc.update(overrides)
    return hpc


def local_hpc(data_dir: str, **overrides) -> dict:
    hpc = {"id": "local", "name": "This machine", "scheduler": "local",
           "work_root": os.path.join(data_dir, "work"), "capacity": 8, "poll_interval": 0.5}
    hpc.update(overrides)
    return hpc


@dataclass
class Services:
    """A middleware and a maintainer pool with their own data dir and Redis key prefix."""

    tmp: str
    stack: dict | None = None
    hpcs: list[dict] | None = None
    workers: int = 1
    auth: str = "hub"  # "hub" (the stack's JupyterHub) or "static"
    static_tokens: dict = field(default_factory=dict)
    extra_config: str = ""
    port: int = field(default_factory=free_port)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    procs: dict = field(default_factory=dict)
    # "" = SQLite in data_dir, or a new PostgreSQL database under HPCBRIDGE_TEST_DB=postgresql
    db_url: str = ""
    _own_db: contextlib.ExitStack | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> str:
        return os.path.join(self.tmp, "data")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1"

    @property
    def config_file(self) -> str:
        return os.path.join(self.tmp, "hpcbridge_config.py")

    def choose_db(self) -> None:
        """Fill db_url: a test's own choice stays (db_url=, or c.Site.db_url in extra_config,
        which the config file applies last)."""
        if self.db_url or "c.Site.db_url" in self.extra_config:
            return
        if test_db() == "sqlite":
            self.db_url = f"sqlite:///{os.path.join(self.data_dir, 'hpcbridge.db')}"
            return
        self._own_db = contextlib.ExitStack()
        atexit.register(self._own_db.close)  # a test that never reaches stop() drops it too
        self.db_url = self._own_db.enter_context(
            new_pg_database(self.stack or read_stack(), "hpcbridge_it"))

    def drop_db(self) -> None:
        """Drop the PostgreSQL database this Services made (nothing for SQLite)."""
        own, self._own_db = self._own_db, None
        if own is not None:
            own.close()
            atexit.unregister(own.close)
            self.db_url = ""

    def write_config(self) -> None:
        os.makedirs(self.data_dir, exist_ok=True)
        self.choose_db()
        hpcs = self.hpcs if self.hpcs is not None else [local_hpc(self.data_dir)]
        lines = [
            f"c.Site.data_dir = {self.data_dir!r}",
            f"c.Site.hpcs = {hpcs!r}",
            f"c.Site.queue_prefix = {('hpcbridge-test-' + self.run_id)!r}",
            "c.Site.worker_timeout = 6.0",
            f"c.HPCBridgeServer.port = {self.port}",
        ]
        if self.db_url:
            lines.append(f"c.Site.db_url = {self.db_url!r}")
        if self.stack:
            lines.append(f"c.Site.redis_url = {self.stack['redis_url']!r}")
        if self.auth == "hub":
            hub = self.stack["hub"]
            lines += [
                "c.HPCBridgeServer.authenticator_class = "
                "'hpcbridge.server.auth.HubAuthenticator'",
                f"c.HubAuthenticator.hub_api_url = {hub['api_url']!r}",
                f"c.HubAuthenticator.service_token = {hub['tokens']['service']!r}",
            ]
        else:
            lines += [
                "c.HPCBridgeServer.authenticator_class = "
                "'hpcbridge.server.auth.StaticTokenAuthenticator'",
                f"c.StaticTokenAuthenticator.tokens = {self.static_tokens!r}",
                "c.StaticTokenAuthenticator.admin_users = {'admin'}",
            ]
        with open(self.config_file, "w") as f:
            f.write("\n".join(lines) + "\n" + self.extra_config + "\n")

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(os.path.join(self.tmp, f"{name}.log"), "ab")
        proc = subprocess.Popen([sys.executable, "-m", "hpcbridge.cli", *args,
                                 "--config", self.config_file],
                                cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def start(self, maintainer: bool = True) -> Services:
        self.write_config()
        self._spawn("server", "server")
        self.wait_health()
        if maintainer:
            self.start_maintainer()
        return self

    def start_maintainer(self, workers: int | None = None, name: str = "maintainer"):
        return self._spawn(name, "maintainer", "--workers", str(workers or self.workers))

    def wait_health(self, timeout: float = 30, name: str = "server",
                    api: str | None = None) -> None:
        """Until the middleware process `name` (API at `api`, default this one's) answers
        /health; its log in the error when it exits or stays silent."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"middleware exited ({name}):\n{self.log(name)}")
            try:
                if httpx.get(f"{api or self.api}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"middleware did not answer ({name}):\n{self.log(name)}")

    def log(self, name: str, tail: int | None = 5000) -> str:
        """The end of a service's log (tail characters; None: all of it)."""
        try:
            with open(os.path.join(self.tmp, f"{name}.log")) as f:
                return f.read()[-tail:] if tail else f.read()
        except FileNotFoundError:
            return ""

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.api + "/", timeout=30,
                            headers={"Authorization": f"token {token}"})

    def stop(self, name: str | None = None, sig: int = signal.SIGTERM) -> None:
        if name is None and self.stack and any(h.get("scheduler") == "slurm"
                                               for h in self.hpcs or ()):
            cancel_run_jobs(self.stack, self.run_id)
        names = [name] if name else list(reversed(self.procs))
        for n in names:
            proc = self.procs.get(n)
            if proc is not None and proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
        for n in names:
            proc = self.procs.get(n)
            if proc is None:
                continue
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if name is None:
            self.drop_db()

    def wait_job(self, http: httpx.Client, job_id: str, statuses=("succeeded", "failed",
                 "cancelled"), timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        job = {}
        while time.monotonic() < deadline:
            job = http.get(f"jobs/{job_id}").json()
            if job.get("status") in statuses:
                return job
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} still {job.get('status')} after {timeout} s; "
                             f"events: {json.dumps(http.get(f'jobs/{job_id}/events').json())}"
                             f"\nmaintainer log:\n{self.log('maintainer')}")


def wait_for_sshd(stack: dict, timeout: float = 90) -> None:
    """Another test may restart sshd for a moment: give it time before the probe."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((stack["ssh"]["host"], stack["ssh"]["port"]), 2):
                return
        except OSError:
            time.sleep(0.5)


def on_login_node(stack: dict, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a command as hpcuser on the login node (test set-up and clean-up)."""
    ssh = stack["ssh"]
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", f"UserKnownHostsFile={ssh['known_hosts']}", "-o", "ConnectTimeout=5",
         "-i", ssh["key"], "-p", str(ssh["port"]), f"{ssh['user']}@{ssh['host']}", *argv],
        capture_output=True, text=True, timeout=timeout)


def remove_remote(stack: dict, path: str) -> None:
    """rm -rf a path under hpcuser's home on the login node (test clean-up)."""
    on_login_node(stack, "rm", "-rf", path)


def cancel_run_jobs(stack: dict, run_id: str) -> None:
    """scancel every Slurm job working under this run's folder: a session or job left
    running would hold the test cluster's CPUs for its whole time limit."""
    script = (f"squeue -h -o '%i %Z' | awk '$2 ~ /\\/hpcbridge-it\\/{run_id}(\\/|$)/ "
              "{print $1}' | xargs -r scancel")
    try:
        on_login_node(stack, script, timeout=30)
    except (subprocess.SubprocessError, OSError):
        pass  # clean-up is best effort: the job's time limit still ends it


def pg_password(stack: dict) -> str:
    """The password of the stack's PostgreSQL role (it holds '%', '@' and '/')."""
    pg = stack.get("postgres")
    if not pg:
        raise RuntimeError("the stack has no PostgreSQL (run `make stack`)")
    with open(pg["password_file"]) as f:
        return f.read().strip()


@contextlib.contextmanager
def new_pg_database(stack: dict, prefix: str = "hpcbridge_test"):
    """A new empty database on the stack's PostgreSQL: its URL (the password URL-quoted),
    dropped afterwards."""
    from urllib.parse import quote

    import sqlalchemy as sa
    pg = stack["postgres"]
    base = (f"postgresql+psycopg://{pg['user']}:{quote(pg_password(stack), safe='')}"
            f"@{pg['host']}:{pg['port']}/")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base + "postgres", isolation_level="AUTOCOMMIT",
                             connect_args={"connect_timeout": 10})
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base + name
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
