"""Faults against the real stack: a worker killed with SIGKILL mid-submission, an HPC that
cannot be reached, an rq job lost from Redis, an app whose stored manifest no longer
parses. Fixtures: conftest.py; helpers: maintainer_support.py."""
from __future__ import annotations

import signal
import time
from collections import Counter

import pytest
import redis
from maintainer_support import (
    add_app,
    event_types,
    slurm_jobs_of,
    submit,
    token,
    wait_all,
)
from services import free_port, slurm_hpc

from hpcbridge.server.store import Store

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(600)]


def test_worker_killed_mid_submissions_is_taken_over(slurm_services, stack, redis_url):
    """Two maintainer processes; the one holding the Slurm poller lease is killed with
    SIGKILL while 50 jobs are being staged and submitted. The other takes over the lease,
    reconciles what the dead one left, and every job runs in Slurm exactly once."""
    start = time.time()
    svc = slurm_services(capacity=10, maintainer=False)
    svc.start_maintainer(1, name="m1")
    svc.start_maintainer(1, name="m2")
    http = svc.client(token(stack, "alice"))
    red = redis.Redis.from_url(redis_url)
    lease_key = f"hpcbridge-test-{svc.run_id}:lease:slurm"

    ids = [submit(http, "hello", lines=1, delay=0) for _ in range(50)]
    deadline = time.monotonic() + 120
    holder = None
    while time.monotonic() < deadline:
        holder = holder or (red.get(lease_key) or b"").decode() or None
        statuses = Counter(http.get(f"jobs/{j}").json()["status"] for j in ids)
        if holder and statuses["queued"] < 40 and statuses["staging"] >= 1:
            break
        time.sleep(0.05)
    assert holder, "nobody took the poller lease"
    victim = next(n for n in ("m1", "m2") if f"-{svc.procs[n].pid}-" in holder)
    survivor = "m2" if victim == "m1" else "m1"
    in_flight = Counter(http.get(f"jobs/{j}").json()["status"] for j in ids)
    svc.stop(victim, signal.SIGKILL)

    jobs = wait_all(svc, http, ids, timeout=420)
    assert Counter(j["status"] for j in jobs.values()) == {"succeeded": 50}, \
        (in_flight, [j["message"] for j in jobs.values() if j["status"] != "succeeded"][:5],
         svc.log(survivor))
    new_holder = (red.get(lease_key) or b"").decode()
    assert new_holder and new_holder != holder and f"-{svc.procs[survivor].pid}-" in new_holder
    # exactly one Slurm job per hpcbridge job: nothing submitted twice, nothing lost
    slurm = slurm_jobs_of(stack, start, ids)
    assert {i: len(s) for i, s in slurm.items()} == {i: 1 for i in ids}, in_flight
    assert all(s == ["COMPLETED"] for s in slurm.values())
    for job_id in ids:
        assert event_types(http, job_id).count("submitted") == 1


def test_unreachable_hpc_keeps_jobs_waiting_not_failed(slurm_services, stack, tmp_path):
    dead_port = free_port()  # nothing listens here
    dead = slurm_hpc(stack, "dead", id="dead", name="Unreachable", port=dead_port,
                     connect_timeout=2, connect_retries=2)
    svc = slurm_services(capacity=4, extra_hpcs=[dead])
    app = add_app(svc, stack, tmp_path, "both", "echo hi > result/hi", hpcs=("slurm", "dead"))
    http = svc.client(token(stack, "alice"))
    waiting = [submit(http, app, hpc="dead") for _ in range(3)]
    alive = submit(http, app, hpc="slurm")
    # the other HPC is not held up by the dead one
    assert svc.wait_job(http, alive, timeout=120)["status"] == "succeeded"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        events = {j: http.get(f"jobs/{j}/events").json() for j in waiting}
        if all(any(e["type"] == "waiting" for e in ev) for ev in events.values()):
            break
        time.sleep(0.5)
    time.sleep(8)  # several poll cycles against the dead HPC
    for job_id in waiting:
        job = http.get(f"jobs/{job_id}").json()
        assert job["status"] == "queued", job
        events = http.get(f"jobs/{job_id}/events").json()
        waits = [e for e in events if e["type"] == "waiting"]
        assert waits and all(e["message"].startswith("waiting for dead") for e in waits), events
        assert not any(e["type"] == "failed" for e in events)
    hpcs = {h["id"]: h for h in http.get("hpcs").json()}
    assert hpcs["dead"]["reachable"] is False and hpcs["dead"]["message"]
    assert hpcs["slurm"]["reachable"] is True
    # a cancel is honoured without the HPC
    for job_id in waiting:
        assert http.post(f"jobs/{job_id}/cancel").status_code == 202
    for job_id in waiting:
        assert svc.wait_job(http, job_id, timeout=60)["status"] == "cancelled"


def test_rq_job_lost_from_redis_is_recreated_from_the_store(slurm_services, stack, redis_url):
    svc = slurm_services(capacity=4, maintainer=False)
    http = svc.client(token(stack, "alice"))
    ids = [submit(http, "hello", lines=1, delay=0) for _ in range(3)]
    red = redis.Redis.from_url(redis_url)
    queue_key = f"rq:queue:hpcbridge-test-{svc.run_id}.slurm"
    assert red.llen(queue_key) == 1  # one wake of the HPC for the three
    red.delete(queue_key)  # Redis lost the queue (restart without persistence)
    svc.start_maintainer()
    jobs = wait_all(svc, http, ids, timeout=120)
    assert {j["status"] for j in jobs.values()} == {"succeeded"}


def test_a_job_whose_stored_manifest_no_longer_parses_ends_failed(slurm_services, stack,
                                                                    tmp_path):
    """The app's manifest was valid when the job was submitted and broke before a worker
    staged it (an older rule set, an edited database): the job fails with the reason and
    never reaches Slurm."""
    start = time.time()
    svc = slurm_services(capacity=4, maintainer=False)
    app = add_app(svc, stack, tmp_path, "breaks", "echo hi > result/hi")
    http = svc.client(token(stack, "alice"))
    broken, sound = submit(http, app), submit(http, "hello", lines=1, delay=0)
    store = Store(svc.db_url, create=False)
    row = store.get_app(app)  # what a stored manifest may hold that today's rules refuse
    row.manifest = {**row.manifest, "slurm_input_rules": {"walltime": {"min": 1}}}
    store.put_app(row)
    svc.start_maintainer()
    jobs = wait_all(svc, http, [broken, sound], timeout=180)
    assert jobs[sound]["status"] == "succeeded", jobs[sound]
    assert jobs[broken]["status"] == "failed", jobs[broken]
    assert jobs[broken]["message"] == (f"the manifest of app {app} is no longer valid: "
                                       "unknown slurm_input_rules ['walltime']; known: "
                                       "['time', 'cpus', 'memory', 'gpus', 'partition']")
    types = event_types(http, broken)
    assert types == ["queued", "staging", "failed"], types
    assert slurm_jobs_of(stack, start, [broken], ran=[], settle=0)[broken] == []

