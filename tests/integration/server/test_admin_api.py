"""The admin API end to end (issue #25): a real middleware and maintainer (tests/services.py)
with the stack's Redis and JupyterHub tokens, a local HPC that works and a Slurm HPC (`slurm`) whose
ssh port is closed.

One scenario: a job succeeds on `local`; a job for the dead HPC waits (stuck, with its
`waiting` event); HPC health shows both (cycles and commands counted, the dead one
unreachable with its error); usage per user counts the jobs; a job left in staging is
refused a requeue while a live worker holds its claim and is moved on once the holder is
dead; only admins get any of it. Both services log JSON lines (--log-format json).
"""
from __future__ import annotations

import json
import os
import time

import pytest
from services import Services, free_port, local_hpc

from hpcbridge.server.store import Store

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(180)]


def dead_hpc(stack: dict) -> dict:
    """The `slurm` HPC entry (the bundled apps run there), on an ssh port nothing listens
    on: unreachable at once."""
    ssh = stack["ssh"]
    return {"id": "slurm", "scheduler": "slurm", "host": "127.0.0.1", "port": free_port(),
            "user": ssh["user"], "key_file": ssh["key"], "known_hosts": ssh["known_hosts"],
            "connect_timeout": 2.0, "connect_retries": 1, "poll_interval": 0.5}


def wait_for(check, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def admin_services(stack, hub, tmp_path_factory):
    services = Services(str(tmp_path_factory.mktemp("admin")), stack, auth="hub")
    services.hpcs = [local_hpc(services.data_dir), dead_hpc(stack)]
    services.extra_config = "\n".join([  # both services log JSON lines
        "c.HPCBridgeServer.log_format = 'json'", "c.MaintainerApp.log_format = 'json'",
        "c.Application.log_level = 'INFO'"])
    services.start()
    yield services
    services.stop()


def test_admin_view_of_a_running_site(admin_services, stack):
    svc = admin_services
    tokens = stack["hub"]["tokens"]
    alice, admin = svc.client(tokens["alice"]), svc.client(tokens["admin"])
    for path in ("admin/hpcs", "admin/stuck", "admin/users"):
        r = alice.get(path)
        assert r.status_code == 403 and r.json()["error"] == "forbidden", path

    ok = alice.post("jobs", json={"app": "hello", "hpc": "local", "params": {}}).json()
    stuck = alice.post("jobs", json={"app": "hello", "hpc": "slurm", "params": {}}).json()
    assert svc.wait_job(alice, ok["id"])["status"] == "succeeded"

    # the dead HPC: unreachable with its error; the local one polled, commands counted
    def health():
        found = {h["hpc"]["id"]: h for h in admin.get("admin/hpcs").json()}
        return found if found["slurm"]["hpc"]["reachable"] is False else None
    found = wait_for(health, what="unreachable HPC")
    assert found["slurm"]["last_error"] and found["slurm"]["commands_cap"] == 6000
    local = found["local"]
    assert local["hpc"]["reachable"] is True and local["cycles"] > 0
    assert local["last_cycle"]["at"] and local["last_cycle"]["seconds"] is not None
    assert local["commands_per_minute"] > 0 and local["commands"]
    assert local["stats_error"] is None

    # the job for the dead HPC is stuck in queued, its last event says why
    rows = wait_for(lambda: [s for s in admin.get("admin/stuck", params={"older_than": 0})
                             .json() if s["job"]["id"] == stuck["id"]], what="stuck job")
    assert rows[0]["job"]["status"] == "queued" and rows[0]["last_event"]["type"] == "waiting"
    assert "slurm" in rows[0]["last_event"]["message"]
    assert not [s for s in admin.get("admin/stuck", params={"older_than": 3600}).json()
                if s["job"]["id"] == stuck["id"]]
    assert admin.get("admin/stuck", params={"older_than": -1}).status_code == 422

    usage = {u["user"]: u for u in admin.get("admin/users").json()}
    assert usage["alice"]["jobs"]["succeeded"] >= 1 and usage["alice"]["active_jobs"] >= 1
    check_requeue(svc, alice, admin)
    check_json_logs(svc)


def check_json_logs(svc) -> None:
    def records(name: str) -> list[dict]:
        with open(os.path.join(svc.tmp, f"{name}.log")) as f:
            return [json.loads(line) for line in f if line.strip()]
    server = records("server")
    assert any(r["logger"] == "HPCBridgeServer" and "/api/v1/admin/hpcs" in r["message"]
               for r in server)
    assert all({"time", "level", "message"} <= set(r) for r in server)
    requeued = [r for r in server if r["message"].startswith("job requeued")]
    assert requeued and requeued[0]["user"] == "alice" and requeued[0]["hpc"] == "local"
    assert len(requeued[0]["job_id"]) == 32
    assert any(r["logger"] == "hpcbridge.maintainer" for r in records("maintainer"))


def check_requeue(svc, alice, admin) -> None:
    """A job left in staging: refused while a live worker holds it, taken on after."""
    store = Store(svc.db_url, create=False)
    job = store.create_job(user="alice", app="hello", hpc="local", params={})
    assert store.transition(job.id, "staging", "left in staging by the test")
    redis = svc_redis(svc)
    claim = f"hpcbridge-test-{svc.run_id}:claim:{job.id}"
    store.heartbeat("test-live-worker", "here", 1, [])
    try:
        redis.set(claim, "test-live-worker", px=60000)
        workers = {w["id"]: w for w in admin.get("admin/workers").json()}
        assert workers["test-live-worker"]["claims"] == [job.id]
        assert any("local" in w["leases"] for w in workers.values())
        r = admin.post(f"admin/jobs/{job.id}/requeue")
        assert r.status_code == 409 and "test-live-worker" in r.json()["message"]
        assert alice.post(f"admin/jobs/{job.id}/requeue").status_code == 403
        redis.set(claim, "test-dead-worker", px=60000)  # no heartbeat: dead
        r = admin.post(f"admin/jobs/{job.id}/requeue")
        assert r.status_code == 202, r.text
        assert r.json()["requeued"] is True and "test-dead-worker" in r.json()["message"]
        assert svc.wait_job(alice, job.id)["status"] == "succeeded"
        types = [e["type"] for e in alice.get(f"jobs/{job.id}/events").json()]
        assert "requeued" in types
        r = admin.post(f"admin/jobs/{job.id}/requeue")  # ended: nothing to requeue
        assert r.status_code == 409 and r.json()["error"] == "conflict"
    finally:
        store.remove_worker("test-live-worker")
        store.close()
        redis.close()


def svc_redis(svc):
    import redis
    return redis.Redis.from_url(svc.stack["redis_url"], socket_timeout=5)
