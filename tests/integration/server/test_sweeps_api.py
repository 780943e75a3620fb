"""The sweep routes end to end (issue #24): a real middleware (tests/services.py) with the
stack's Redis and JupyterHub tokens, elements on the local HPC. The maintainer starts late,
so that what the API records can be looked at before anything moves: then it honours the
sweep's cancel. Also: the store part on the stack's PostgreSQL, against its time bound."""
from __future__ import annotations

import os
import time
import uuid

import httpx
import pytest
from services import Services, local_hpc

from hpcbridge.server.store import Store

pytestmark = [pytest.mark.stack, pytest.mark.slow]

WAIT = 120


@pytest.fixture(scope="module")
def svc(tmp_path_factory, stack, hub, redis_url):
    tmp = str(tmp_path_factory.mktemp("sweeps"))
    services = Services(tmp, stack, auth="hub", hpcs=[local_hpc(os.path.join(tmp, "data"))])
    services.start(maintainer=False)
    yield services
    services.stop()


@pytest.fixture(scope="module")
def http(svc, hub):
    clients = {who: svc.client(hub.tokens[who]) for who in ("alice", "bob", "admin")}
    yield clients
    for client in clients.values():
        client.close()


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    """The error contract: that status, JSON {error, message, details}, no traceback."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["error"] == code and body["message"], body
    assert "Traceback" not in response.text
    return body


def elements(client: httpx.Client, sweep_id: str, **query) -> dict:
    r = client.get(f"sweeps/{sweep_id}/jobs", params={"limit": 1000, **query})
    assert r.status_code == 200, r.text
    return r.json()


def wait_sweep(client: httpx.Client, sweep_id: str, svc: Services) -> dict:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        sweep = client.get(f"sweeps/{sweep_id}").json()
        if sweep["done"]:
            return sweep
        assert svc.procs["maintainer"].poll() is None, "maintainer exited:\n" + \
            svc.log("maintainer")
        time.sleep(0.3)
    raise AssertionError(f"sweep still {sweep['counts']} after {WAIT} s\n"
                         f"{svc.log('maintainer')}")


def test_a_sweep_is_checked_recorded_private_and_cancelled_as_a_whole(svc, http):
    alice, bob = http["alice"], http["bob"]
    # every point is checked first: one bad point refuses the sweep, naming it
    bad = [{"lines": 1}] * 17 + [{"lines": 500}]
    body = assert_error(alice.post("sweeps", json={"app": "hello", "params": bad}), 422,
                        "validation_error")
    assert body["details"] == [{"loc": ["params", 17, "lines"], "msg": "must be at most 100"}]
    body = assert_error(alice.post("sweeps", json={"app": "hello", "grid": {
        "lines": [1, 900]}}), 422, "validation_error")
    assert body["details"] == [{"loc": ["grid", "lines"], "msg": "value 900 must be at most "
                                                                "100"}]
    assert_error(alice.post("sweeps", json={"app": "hello", "grid": {
        "lines": {"range": [1, 101, 1]}, "delay": {"range": [0, 60, 0.5]}}}), 422,
        "validation_error")  # 12,000 points: past the bound
    assert_error(alice.post("sweeps", json={"app": "hello"}), 422, "validation_error")
    assert alice.get("sweeps").json()["total"] == 0  # nothing of those was accepted

    # a grid over a base: 2 × 3 elements, each a queued job with its own parameters
    key = {"Idempotency-Key": uuid.uuid4().hex}
    request = {"app": "hello", "throttle": 2, "base": {"name": "Ada"},
               "grid": {"lines": [1, 2], "delay": {"range": [0, 0.3, 0.1]}}}
    r = alice.post("sweeps", json=request, headers=key)
    assert r.status_code == 201, r.text
    sweep = r.json()
    assert r.headers["Location"].endswith(f"/api/v1/sweeps/{sweep['id']}")
    assert (sweep["size"], sweep["throttle"], sweep["counts"], sweep["done"]) == (
        6, 2, {"queued": 6}, False)
    assert sweep["resources"] == {"time": 5, "cpus": 1}  # the manifest's defaults
    again = alice.post("sweeps", json=request, headers=key)  # a retried request
    assert again.json()["id"] == sweep["id"] and again.headers["Idempotent-Replayed"]
    assert_error(alice.post("sweeps", json={**request, "throttle": 3}, headers=key), 422,
                 "validation_error")
    page = elements(alice, sweep["id"], limit=2, offset=3)
    assert page["total"] == 6
    assert [(j["sweep_index"], j["params"]) for j in page["jobs"]] == [
        (3, {"name": "Ada", "lines": 2, "delay": 0.0}),
        (4, {"name": "Ada", "lines": 2, "delay": 0.1})]
    jobs = elements(alice, sweep["id"])["jobs"]
    assert [j["sweep_index"] for j in jobs] == list(range(6))
    one = alice.get(f"jobs/{jobs[0]['id']}").json()  # an element is a job like any other
    assert (one["sweep_id"], one["sweep_index"], one["status"]) == (sweep["id"], 0, "queued")
    assert alice.get("sweeps").json()["sweeps"][0]["id"] == sweep["id"]

    # bob sees none of it
    for path in (f"sweeps/{sweep['id']}", f"sweeps/{sweep['id']}/jobs"):
        assert_error(bob.get(path), 404, "not_found")
    assert_error(bob.post(f"sweeps/{sweep['id']}/cancel"), 404, "not_found")
    assert_error(bob.get(f"jobs/{jobs[0]['id']}"), 404, "not_found")
    assert bob.get("sweeps").json() == {"sweeps": [], "total": 0}
    assert_error(alice.get(f"sweeps/{uuid.uuid4().hex}"), 404, "not_found")
    admin = http["admin"]  # admins read anyone's sweep, as they read anyone's job
    assert admin.get(f"sweeps/{sweep['id']}").json()["user"] == "alice"
    assert elements(admin, sweep["id"])["total"] == 6
    assert sweep["id"] in [s["id"] for s in admin.get("sweeps?all=1").json()["sweeps"]]
    assert admin.get("sweeps").json()["total"] == 0
    assert_error(admin.post(f"sweeps/{sweep['id']}/cancel"), 404, "not_found")

    # one element cancelled alone, then the sweep: every active element is asked once
    assert alice.post(f"jobs/{jobs[0]['id']}/cancel").status_code == 202
    r = alice.post(f"sweeps/{sweep['id']}/cancel")
    assert r.status_code == 202, r.text
    assert all(j["cancel_requested"] for j in elements(alice, sweep["id"])["jobs"])
    types = [e["type"] for e in alice.get(f"jobs/{jobs[5]['id']}/events").json()]
    assert types == ["queued", "cancel_requested"]

    svc.start_maintainer()  # now the pool honours the requests
    done = wait_sweep(alice, sweep["id"], svc)
    assert (done["counts"], done["finished"], done["progress"]) == ({"cancelled": 6}, 6, 1.0)
    assert elements(alice, sweep["id"], status="cancelled")["total"] == 6
    assert_error(alice.post(f"sweeps/{sweep['id']}/cancel"), 409, "conflict")


def test_the_store_creates_a_thousand_point_sweep_quickly_on_postgresql(pg_url):
    store = Store(pg_url)
    try:
        points = [{"lines": i % 100 + 1, "delay": 0} for i in range(1000)]
        started = time.perf_counter()
        sweep = store.create_sweep("alice", "hello", "local", {"time": 5}, None, None, points)
        elapsed = time.perf_counter() - started
        assert elapsed < 1.0, f"{elapsed:.2f} s for 1,000 elements"
        assert store.sweep_counts([sweep.id])[sweep.id] == {"queued": 1000}
        assert len(store.cancel_sweep(sweep.id)) == 1000
        assert store.cancel_sweep(sweep.id) == []
    finally:
        store.close()
