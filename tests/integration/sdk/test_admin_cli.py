"""`hpcbridge admin …` against a real middleware and maintainer (local HPC, the stack's hub
tokens): workers, drain and resume, cancel and requeue, usage; rich tables and --json; a
non-admin and a refused requeue end with exit code 2 and the API's message."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from services import Services, local_hpc

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def site(stack, hub, tmp_path_factory):
    services = Services(str(tmp_path_factory.mktemp("admincli")), stack, auth="hub")
    services.hpcs = [local_hpc(services.data_dir)]
    services.start()
    yield services
    services.stop()


def admin(site, token: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCBRIDGE_")}
    env.update(HPCBRIDGE_URL=site.url, HPCBRIDGE_TOKEN=token, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "hpcbridge.cli", "admin", *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_admin_commands(site, stack):
    tokens = stack["hub"]["tokens"]
    alice = site.client(tokens["alice"])

    deadline = time.monotonic() + 30
    # a heartbeat that names the poller's lease (the first may come before the lease)
    while not any("local" in w["leases"]
                  for w in site.client(tokens["admin"]).get("admin/workers").json()):
        assert time.monotonic() < deadline, site.log("maintainer")
        time.sleep(0.3)
    workers = json.loads(admin(site, tokens["admin"], "workers", "--json").stdout)
    assert workers and all(w["alive"] for w in workers)
    table = admin(site, tokens["admin"], "workers").stdout
    holder = next(w for w in workers if "local" in w["leases"])
    assert holder["id"] in table and "local" in table, table  # its poller lease

    drained = json.loads(admin(site, tokens["admin"], "drain", "local", "--json").stdout)
    assert drained[0]["draining"] is True
    refused = alice.post("jobs", json={"app": "hello", "hpc": "local", "params": {}})
    assert refused.status_code >= 400 and "drain" in refused.json()["message"]
    table = admin(site, tokens["admin"], "resume", "local").stdout
    assert "local" in table and "draining" in table
    assert not any(h["draining"] for h in alice.get("hpcs").json())
    job = alice.post("jobs", json={"app": "hello", "hpc": "local", "params": {}}).json()
    assert site.wait_job(alice, job["id"])["status"] == "succeeded"

    r = admin(site, tokens["admin"], "requeue", job["id"])
    assert r.returncode == 2 and "only a job in staging or finishing" in r.stderr
    r = admin(site, tokens["admin"], "requeue", job["id"], "--json")
    assert json.loads(r.stderr)["error"] == "conflict"

    slow = alice.post("jobs", json={"app": "hello", "hpc": "local",
                                    "params": {"lines": 50, "delay": 1}}).json()
    cancelled = json.loads(admin(site, tokens["admin"], "cancel", slow["id"], "--json").stdout)
    assert cancelled["cancel_requested"] is True
    assert site.wait_job(alice, slow["id"])["status"] == "cancelled"

    users = admin(site, tokens["admin"], "users").stdout
    assert "alice" in users and "succeeded 1" in users and "cancelled 1" in users, users
    r = admin(site, tokens["alice"], "users")
    assert r.returncode == 2 and "admin" in r.stderr and not r.stdout
