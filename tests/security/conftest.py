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
import uuid
from pathlib import Path

import pytest

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
