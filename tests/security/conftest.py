"""The security suite (issue 20): hostile jobs, apps and requests against the real stack.
Every test here carries the `security` marker (`pytest -m security` runs the suite alone).

Fixtures for the connectors' side:
    hpc_pool(**overrides)  an async factory of ConnectorPools to the stack's sshd (as
                           hpcuser), each under its own ~/hpcbridge-tests/<uuid> work root,
                           removed at the end (mode-000 folders included)
    remote_sh              async (pool, text, *args): shell text on the login node as
                           hpcuser, args as its $1…; its stdout
"""
from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest
from services import new_pg_database

from hpcbridge.connectors.config import HPCConfig
from hpcbridge.connectors.pool import ConnectorPool

HERE = Path(__file__).resolve().parent


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "security: the security suite of issue 20 (tests/security): hostile "
                   "jobs, apps and requests; nothing outside what they own may be touched")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.security)


async def _remote_sh(pool: ConnectorPool, text: str, *args: str, timeout: float = 60) -> str:
    """Shell text on the login node as hpcuser (through the pool's own SSH); `args` are
    its $1, $2… (never spliced into the text)."""
    result = await asyncio.wait_for(
        pool.run(["sh", "-c", text, "sh", *args], timeout=timeout), timeout + 5)
    if result.exit_status != 0:
        raise AssertionError(f"{text!r} exited {result.exit_status}: {result.stderr}")
    return result.stdout


@pytest.fixture
def remote_sh():
    return _remote_sh


@pytest.fixture
async def hpc_pool(ssh_target):
    pools: list[ConnectorPool] = []

    async def make(**overrides) -> ConnectorPool:
        t = ssh_target
        values = dict(id="stack", host=t.host, port=t.port, user=t.user, key_file=t.key,
                      known_hosts=t.known_hosts, connections=1, channels_per_connection=8,
                      commands_per_minute=100_000, command_timeout=60, sftp_timeout=20,
                      work_root=f"~/hpcbridge-tests/{uuid.uuid4().hex}",
                      partitions=["debug"])
        values.update(overrides)
        pool = ConnectorPool(HPCConfig(**values))
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        try:
            root = await asyncio.wait_for(pool.resolve_work_root(), 30)
            assert "/hpcbridge-tests/" in root
            # a mode-000 folder is made removable first
            await _remote_sh(pool, 'chmod -R u+rwx -- "$1"; rm -rf -- "$1"', root)
        finally:
            await pool.close()


# ============================================================================================
# The middleware's side: hub users with hostile names, their tokens, a middleware process
# ============================================================================================
# user names that break a URL path spliced unquoted: '#' and '?' cut it, a space and
# non-ASCII must survive the trip; `admin#…` would be looked up as `admin`
ODD_NAMES = ("admin#{run}", "alice?{run}", "carol d{run}", "zoë-ü{run}")


class HubUsers:
    """Users and tokens made through the hub's REST API with the stack's admin token;
    everything made is removed at the end."""

    def __init__(self, hub, run: str):
        import httpx
        self.hub, self.run = hub, run
        self.http = httpx.Client(base_url=hub.api_url + "/", timeout=30,
                                 headers=hub.headers("admin"))
        self.users: list[str] = []
        self.tokens: dict[str, str] = {}  # token -> owner: every one is scanned for in logs

    def _path(self, name: str) -> str:
        from urllib.parse import quote
        return f"users/{quote(name, safe='')}"

    def create(self, name: str) -> str:
        r = self.http.post("users", json={"usernames": [name]})
        assert r.status_code == 201, r.text
        assert r.json()[0]["name"] == name and r.json()[0]["admin"] is False
        self.users.append(name)
        return name

    def token(self, name: str, scopes: list[str] | None = None) -> tuple[str, str]:
        """(token, token id) of `name`; scopes None: the user's own (the `user` role)."""
        body = {"note": "hpcbridge security suite", "expires_in": 1800}
        if scopes is not None:
            body["scopes"] = scopes
        r = self.http.post(f"{self._path(name)}/tokens", json=body)
        assert r.status_code in (200, 201), r.text
        self.tokens[r.json()["token"]] = name
        return r.json()["token"], r.json()["id"]

    def revoke(self, name: str, token_id: str) -> None:
        r = self.http.delete(f"{self._path(name)}/tokens/{token_id}")
        assert r.status_code == 204, r.text

    def close(self) -> None:
        for name in self.users:
            self.http.delete(self._path(name))
        self.http.close()


@pytest.fixture(scope="session")
def hub_users(hub):
    users = HubUsers(hub, uuid.uuid4().hex[:6])
    yield users
    users.close()


@pytest.fixture(scope="session")
def odd_users(hub_users) -> dict[str, str]:
    """{name: token} of four hub users with hostile names (the `user` role's scopes)."""
    return {name: hub_users.token(hub_users.create(name))[0]
            for name in (n.format(run=hub_users.run) for n in ODD_NAMES)}


@pytest.fixture(scope="session")
def pg_database(stack):
    """A new PostgreSQL database of the stack for the whole suite: its URL."""
    with new_pg_database(stack, "hpcbridge_sec") as url:
        yield url


SECURITY_TTL = 2.0  # the middleware's token cache TTL in this suite
IDLE_TIMEOUT = 3.0  # its idle-connection and body timeouts


@pytest.fixture(scope="session")
def bridge(tmp_path_factory, stack, pg_database):
    """A middleware process (tests/services.py) with hub auth, on PostgreSQL, jobs on the
    local HPC, with this suite's short TTL and timeouts; one for the whole suite, so that
    test_server_secrets.py (the last module) scans everything it logged."""
    from services import Services, local_hpc
    tmp = str(tmp_path_factory.mktemp("security-server"))
    svc = Services(tmp, stack, auth="hub", hpcs=[local_hpc(os.path.join(tmp, "data"))],
                   extra_config="\n".join([
                       f"c.Site.db_url = {pg_database!r}",
                       f"c.Authenticator.cache_ttl = {SECURITY_TTL}",
                       "c.Authenticator.negative_cache_ttl = 1.0",
                       f"c.HPCBridgeServer.idle_connection_timeout = {IDLE_TIMEOUT}",
                       f"c.HPCBridgeServer.body_timeout = {IDLE_TIMEOUT}",
                       "c.HPCBridgeServer.max_upload_size = 8 << 20",
                       "c.HPCBridgeServer.upload_quota = 12 << 20",
                       "c.HPCBridgeServer.max_streams_per_user = 8",
                       "c.HPCBridgeServer.max_uploads_per_user = 2",
                       "c.Application.log_level = 'DEBUG'",
                   ]))
    svc.start(maintainer=False)  # generated jobs stay queued, never run
    yield svc
    svc.stop()
