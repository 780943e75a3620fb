"""Shared pytest fixtures.

The real test stack
-------------------
`make stack` (= `bash stack/up.sh`) runs Slurm (+ slurmdbd), an sshd login node, Redis and
JupyterHub on fixed loopback ports and describes them in `.stack/stack.json`. The fixtures
below read that file and check that their component really answers before a test uses it:

    stack          the parsed stack.json (dict)
    redis_url      "redis://127.0.0.1:6390/0"
    ssh_target     SSHTarget(host, port, user, key, known_hosts) — the login node as hpcuser
    hub            HubInfo(url, api_url, tokens, service_name, service_url)
    chromium       a headless playwright (sync API) Browser on the Debian chromium
    async_chromium the same with playwright's async API, for `async def` tests
    chromium_launch_options  the keyword arguments of `playwright.chromium.launch()`

A component that is not there skips the test, or fails it when CI=true (CI must never
skip silently); the message says how to start the stack.

The database of the services under test (tests/services.py): SQLite in each test's data dir,
or with HPCBRIDGE_TEST_DB=postgresql (`make test-pg`) a new database of each Services' own on
the stack's PostgreSQL, dropped at its stop. `pg_url` gives a test a new empty one directly.

Other fixtures may be added below the marked section at the end of this file.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STACK_JSON = Path(os.environ.get("HPCBRIDGE_STACK_JSON", REPO / ".stack" / "stack.json"))
START_HINT = "start the test stack with `make stack` (or `bash stack/up.sh`, as root)"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# ============================================================================================
# Reading the stack: plain functions, usable outside fixtures too
# ============================================================================================
def in_ci() -> bool:
    """True when running in CI (CI=true/1/yes), where a missing component is an error."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def stack_unavailable(reason: str) -> None:
    """Skip the test — or fail it under CI — because a stack component is missing."""
    message = f"{reason} — {START_HINT}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def read_stack_json(path: Path = STACK_JSON) -> dict | None:
    """The parsed .stack/stack.json, or None when stack/up.sh never ran here."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@dataclass(frozen=True)
class SSHTarget:
    """The sshd login node of the stack. `target["port"]` works as well as `target.port`."""

    host: str
    port: int
    user: str
    key: str
    known_hosts: str

    def __getitem__(self, name: str):
        return getattr(self, name)

    def connect_kwargs(self) -> dict:
        """Keyword arguments for `asyncssh.connect(**target.connect_kwargs())`."""
        return {
            "host": self.host,
            "port": self.port,
            "username": self.user,
            "client_keys": [self.key],
            "known_hosts": self.known_hosts,
        }


@dataclass(frozen=True)
class HubInfo:
    """The stack's JupyterHub. tokens: alice, bob, admin (users) and service (hpcbridge)."""

    url: str
    api_url: str
    tokens: dict = field(default_factory=dict)
    service_name: str = "hpcbridge"
    service_url: str = "http://127.0.0.1:8710"

    def __getitem__(self, name: str):
        return getattr(self, name)

    def headers(self, who: str) -> dict:
        """Authorization header for a token owner: "alice", "bob", "admin" or "service"."""
        return {"Authorization": f"token {self.tokens[who]}"}


def ssh_target_from(stack: dict) -> SSHTarget:
    s = stack["ssh"]
    return SSHTarget(host=s["host"], port=int(s["port"]), user=s["user"], key=s["key"],
                     known_hosts=s["known_hosts"])


def hub_from(stack: dict) -> HubInfo:
    h = stack["hub"]
    return HubInfo(url=h["url"], api_url=h["api_url"], tokens=dict(h["tokens"]),
                   service_name=h.get("service_name", "hpcbridge"),
                   service_url=h.get("service_url", "http://127.0.0.1:8710"))


def run_coroutine(coro, timeout: float = 30):
    """Run a coroutine to completion from sync code, even if a loop runs in this thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout)


def tcp_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# Probes: None when the component answers, else the reason it does not.
def probe_redis(url: str) -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as e:  # any failure means "not usable"
        return f"Redis at {url} does not answer ({type(e).__name__}: {e})"
    return None


def probe_ssh(target: SSHTarget) -> str | None:
    import asyncssh

    async def run_true():
        async with asyncssh.connect(**target.connect_kwargs(), connect_timeout=10) as conn:
            await conn.run("true", check=True, timeout=10)

    where = f"{target.user}@{target.host}:{target.port}"
    for path in (target.key, target.known_hosts):
        if not os.path.exists(path):
            return f"ssh login node {where}: missing {path}"
    try:
        run_coroutine(run_true())
    except Exception as e:
        return f"ssh login node {where} does not answer ({type(e).__name__}: {e})"
    return None


def probe_hub(hub: HubInfo) -> str | None:
    import httpx

    try:
        r = httpx.get(f"{hub.url}/hub/health", timeout=5)
    except Exception as e:
        return f"JupyterHub at {hub.url} does not answer ({type(e).__name__}: {e})"
    if r.status_code != 200:
        return f"JupyterHub at {hub.url}: /hub/health answered {r.status_code}"
    return None


def chromium_executable() -> str:
    """Where the Debian chromium lives: stack.json's answer, else PATH (no stack needed)."""
    data = read_stack_json() or {}
    return data.get("chromium") or shutil.which("chromium") or "/usr/bin/chromium"


def probe_chromium(executable: str) -> str | None:
    if not (os.path.isfile(executable) and os.access(executable, os.X_OK)):
        return f"no chromium at {executable}"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (pip install -e '.[test]')"
    return None


# ============================================================================================
# Stack fixtures
# ============================================================================================
@pytest.fixture(scope="session")
def stack() -> dict:
    """The parsed .stack/stack.json written by stack/up.sh."""
    data = read_stack_json()
    if data is None:
        stack_unavailable(f"no test stack description at {STACK_JSON}")
    return data


@pytest.fixture(scope="session")
def redis_url(stack) -> str:
    """URL of the stack's Redis (127.0.0.1:6390, db 0), checked with a PING."""
    url = stack["redis_url"]
    reason = probe_redis(url)
    if reason:
        stack_unavailable(reason)
    return url


@pytest.fixture(scope="session")
def ssh_target(stack) -> SSHTarget:
    """The stack's sshd login node (hpcuser, key login, known_hosts checked), checked by
    running `true` over a real asyncssh connection."""
    target = ssh_target_from(stack)
    reason = probe_ssh(target)
    if reason:
        stack_unavailable(reason)
    return target


@pytest.fixture(scope="session")
def hub(stack) -> HubInfo:
    """The stack's JupyterHub with fixed API tokens, checked on /hub/health."""
    info = hub_from(stack)
    reason = probe_hub(info)
    if reason:
        stack_unavailable(reason)
    return info


@pytest.fixture(scope="session")
def chromium_launch_options() -> dict:
    """Keyword arguments for `playwright.chromium.launch()` (sync or async API).

    launch() always starts from a fresh temporary user-data dir. Needs no other part of
    the stack (chromium comes with `make stack`'s install step)."""
    executable = chromium_executable()
    reason = probe_chromium(executable)
    if reason:
        stack_unavailable(reason)
    return {"executable_path": executable, "headless": True, "args": list(CHROMIUM_ARGS)}


@pytest.fixture
def chromium(chromium_launch_options):
    """A headless chromium Browser (playwright sync API) for plain `def` tests.

    The sync API refuses to run inside an asyncio loop: use `async_chromium` in
    `async def` tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(**chromium_launch_options)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
async def async_chromium(chromium_launch_options):
    """A headless chromium Browser (playwright async API) for `async def` tests."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(**chromium_launch_options)
        try:
            yield browser
        finally:
            await browser.close()


# ============================================================================================
# More fixtures go below this line.
# ============================================================================================


@pytest.fixture(scope="module")
def slurm_middleware(stack, hub, redis_url, tmp_path_factory, request):
    """A middleware + maintainer (JupyterHub auth) with the stack's Slurm as HPC `slurm`."""
    from services import Services, remove_remote, slurm_hpc, wait_for_sshd

    wait_for_sshd(stack)
    request.getfixturevalue("ssh_target")
    services = Services(str(tmp_path_factory.mktemp("mw")), stack, auth="hub")
    services.hpcs = [slurm_hpc(stack, services.run_id)]
    services.start()
    yield services
    services.stop()
    remove_remote(stack, f"hpcbridge-it/{services.run_id}")



@pytest.fixture
def pg_url(stack):
    """A new empty database on the stack's PostgreSQL for one test."""
    from services import new_pg_database

    with new_pg_database(stack) as url:
        yield url
