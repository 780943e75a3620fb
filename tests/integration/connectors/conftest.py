"""Fixtures of the connector tests against the real stack (sshd at :2222, Slurm,
slurmdbd). Every test works under its own ~/hpcbridge-tests/<uuid> of hpcuser and cancels
what it submitted."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from connector_helpers import Tracked, cleanup, make_config, port_open

from hpcbridge.connectors.handlers import SlurmHandler
from hpcbridge.connectors.pool import ConnectorPool


@pytest.fixture
def ssh(stack, ssh_target):
    """The login node (conftest's ssh_target) plus where the stack keeps sshd's files."""
    t = ssh_target
    s = SimpleNamespace(host=t.host, port=t.port, user=t.user, key=t.key,
                        known_hosts=t.known_hosts, stack_dir=Path(stack["stack_dir"]))
    if not port_open(s):
        pytest.fail(f"sshd of the test stack is not answering at {s.host}:{s.port}")
    return s


@pytest.fixture
async def pool(ssh):
    p = ConnectorPool(make_config(ssh))
    p.tracked = Tracked()
    yield p
    await cleanup(p)


@pytest.fixture
def handler(pool):
    return SlurmHandler(pool.config, pool)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "faults: stops a shared service of the stack (slurmctld) for a few "
                   "seconds; deselected unless `-m faults` is given")


def pytest_collection_modifyitems(config, items):
    """Fault tests disturb other tests running on the stack: only on request."""
    if "faults" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="stops slurmctld: run with -m faults")
    here = Path(__file__).parent  # this hook sees every item: only this folder's
    for item in items:
        if "faults" in item.keywords and here in Path(item.fspath).parents:
            item.add_marker(skip)
