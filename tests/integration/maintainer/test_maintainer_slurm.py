"""The maintainer against the real stack: the middleware and the maintainer pool as
processes (tests/services.py), JupyterHub tokens, Redis, Slurm with accounting behind sshd.
Fixtures: conftest.py; helpers: maintainer_support.py."""
from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter

import pytest
import redis
from maintainer_support import (
    FINAL,
    LIFECYCLE,
    add_app,
    cycle_stats,
    event_time,
    event_types,
    remote,
    slurm_jobs_of,
    squeue_names,
    stamp,
    submit,
    token,
    wait_all,
)

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(600)]


# --- tests ------------------------------------------------------------------------------------
def test_hundred_jobs_end_to_end_with_one_squeue_per_cycle(slurm_services, stack, redis_url):
    start = time.time()
    svc = slurm_services(capacity=25, workers=2)
    alice = svc.client(token(stack, "alice"))
    ids = [submit(alice, "hello", lines=1, delay=0) for _ in range(100)]
    jobs = wait_all(svc, alice, ids, timeout=420)
    assert Counter(j["status"] for j in jobs.values()) == {"succeeded": 100}, \
        [j["message"] for j in jobs.values() if j["status"] != "succeeded"][:5]
    for job_id, job in jobs.items():
        assert job["exit_code"] == 0 and job["scheduler_id"].isdigit()
        types = event_types(alice, job_id)
        assert [t for t in types if t in LIFECYCLE + ["succeeded"]] == \
            LIFECYCLE + ["succeeded"], types
        assert types[-1] == "succeeded"
        got = alice.get(f"jobs/{job_id}/results/result/greeting.txt")
        assert got.status_code == 200 and got.text == "Hello, world!\n"
    # a folder downloads as a zip
    zipped = alice.get(f"jobs/{ids[0]}/results/result")
    assert zipped.status_code == 200 and zipped.content[:2] == b"PK"

    # the scale rule, counted on the real SSH commands of each poll cycle
    totals, cycles = cycle_stats(svc, redis.Redis.from_url(redis_url), "slurm")
    watched = [c for c in cycles if c["watched"]]
    assert len(watched) >= 5, totals
    assert max(c["watched"] for c in watched) >= 10  # many jobs shared one squeue
    bad = [c for c in watched if c["commands"].get("squeue") != 1
           or c["commands"].get("sacct", 0) > 1]
    assert not bad, bad[:3]
    assert all("squeue" not in c["commands"] for c in cycles if not c["watched"])
    assert int(totals.get("commands:squeue", 0)) == int(totals["watched_cycles"])
    assert int(totals["cycles"]) >= len(cycles)

    # and Slurm ran each job exactly once
    slurm = slurm_jobs_of(stack, start, ids)
    missing = {i: jobs[i]["scheduler_id"] for i, s in slurm.items() if not s}
    if missing:  # say what accounting knows of them
        ids_text = ",".join(missing.values())
        print(remote(stack, f"sacct -X -n -P -j {ids_text} --format=JobID,JobName,State,Submit,End"))
    assert {i: len(s) for i, s in slurm.items()} == {i: 1 for i in ids}
    assert all(s == ["COMPLETED"] for s in slurm.values())


def test_exit_code_and_time_limit_end_as_failed(slurm_services, stack, tmp_path):
    svc = slurm_services(capacity=4)
    fail = add_app(svc, stack, tmp_path, "exit3", "echo failing >&2\nexit 3")
    slow = add_app(svc, stack, tmp_path, "slow", "echo started\nsleep 120")
    http = svc.client(token(stack, "alice"))
    timeout_id = submit(http, slow, resources={"time": 1})  # started first: ≈ 70 s
    fail_id = submit(http, fail)

    failed = svc.wait_job(http, fail_id, timeout=120)
    assert failed["status"] == "failed", failed
    assert failed["exit_code"] == 3
    assert failed["message"] == "failed with exit code 3"
    assert "failing" in http.get(f"jobs/{fail_id}/logs", params={"stream": "stderr"}).json()["data"]
    types = event_types(http, fail_id)
    assert types.index("running") < types.index("finishing") < types.index("failed")

    timed = svc.wait_job(http, timeout_id, timeout=240)
    assert timed["status"] == "failed", timed
    assert "TIMEOUT" in timed["message"]
    events = http.get(f"jobs/{timeout_id}/events").json()
    assert any("TIMEOUT" in e["message"] for e in events if e["type"] == "finishing")
    assert "started" in http.get(f"jobs/{timeout_id}/logs").json()["data"]


def test_cancel_queued_pending_and_running(slurm_services, stack, tmp_path):
    start = time.time()
    svc = slurm_services(capacity=2)
    sleeper = add_app(svc, stack, tmp_path, "sleeper", "echo up\nsleep 300")
    http = svc.client(token(stack, "bob"))

    running = submit(http, sleeper)  # holds one CPU
    svc.wait_job(http, running, statuses=("running",), timeout=120)
    pending = submit(http, sleeper, resources={"cpus": 8})  # the node has 8: must wait
    svc.wait_job(http, pending, statuses=("submitted",), timeout=60)
    queued = submit(http, sleeper)  # capacity 2 is full: stays in hpcbridge's queue
    time.sleep(3)
    assert http.get(f"jobs/{queued}").json()["status"] == "queued"
    pending_slurm_id = http.get(f"jobs/{pending}").json()["scheduler_id"]
    state = remote(stack, f"squeue -h -j {pending_slurm_id} -o %T").strip()
    assert state == "PENDING"

    for job_id in (queued, pending, running):
        assert http.post(f"jobs/{job_id}/cancel").status_code == 202
    for job_id in (queued, pending, running):
        job = svc.wait_job(http, job_id, timeout=120)
        assert job["status"] == "cancelled", job
        types = event_types(http, job_id)
        assert "cancel_requested" in types and types[-1] == "cancelled", types
    assert "submitted" not in event_types(http, queued)
    for job_id in (pending, running):
        assert "cancel_sent" in event_types(http, job_id)

    slurm = slurm_jobs_of(stack, start, [queued, pending, running], ran=[pending, running])
    assert slurm[queued] == []  # never reached Slurm
    assert len(slurm[pending]) == 1 and slurm[pending][0].startswith("CANCELLED")
    assert len(slurm[running]) == 1 and slurm[running][0].startswith("CANCELLED")
    assert not set(squeue_names(stack)) & {f"hpcbridge-{j}" for j in (pending, running)}


def test_logs_arrive_while_the_job_runs(slurm_services, stack):
    svc = slurm_services(capacity=2)
    http = svc.client(token(stack, "alice"))
    job_id = submit(http, "hello", lines=60, delay=0.5)
    svc.wait_job(http, job_id, statuses=("running",), timeout=120)
    deadline = time.monotonic() + 25
    data = ""
    while time.monotonic() < deadline:
        data = http.get(f"jobs/{job_id}/logs").json()["data"]
        if "[3/60]" in data:
            break
        time.sleep(0.3)
    status = http.get(f"jobs/{job_id}").json()["status"]
    assert "[1/60] Hello, world!" in data and "[3/60]" in data, data
    assert status == "running" and "[60/60]" not in data
    # reading on from an offset gives only the new part
    more = http.get(f"jobs/{job_id}/logs", params={"offset": len(data.encode())}).json()
    assert more["offset"] == len(data.encode()) and not more["data"].startswith("[1/60]")
    http.post(f"jobs/{job_id}/cancel")
    assert svc.wait_job(http, job_id, timeout=120)["status"] == "cancelled"


class SlurmSampler(threading.Thread):
    """Counts, a few times a second, how many of `names` Slurm has queued or running."""

    def __init__(self, stack):
        super().__init__(daemon=True)
        self.stack, self.names, self.most, self.samples = stack, set(), 0, 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                present = set(squeue_names(self.stack))
            except (AssertionError, subprocess.TimeoutExpired):
                continue
            self.most = max(self.most, len(present & self.names))
            self.samples += 1
            self.done.wait(0.2)


def test_capacity_and_fair_order_between_users(slurm_services, stack, tmp_path):
    svc = slurm_services(capacity=4, workers=2)
    short = add_app(svc, stack, tmp_path, "short", "sleep 3")
    alice, bob = svc.client(token(stack, "alice")), svc.client(token(stack, "bob"))
    sampler = SlurmSampler(stack)
    sampler.start()
    a_ids, b_ids = [], []
    for _ in range(15):
        a_ids.append(submit(alice, short))
        sampler.names.add(f"hpcbridge-{a_ids[-1]}")
    for _ in range(5):
        b_ids.append(submit(bob, short))
        sampler.names.add(f"hpcbridge-{b_ids[-1]}")
    most_in_scheduler = 0
    admin = svc.client(token(stack, "admin"))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        jobs = admin.get("admin/jobs", params={"limit": 100}).json()["jobs"]
        most_in_scheduler = max(most_in_scheduler, sum(
            j["status"] in ("staging", "submitted", "running") for j in jobs))
        if all(j["status"] in FINAL for j in jobs):
            break
        time.sleep(0.2)
    sampler.done.set()
    sampler.join(10)
    a_jobs = [alice.get(f"jobs/{j}").json() for j in a_ids]
    b_jobs = [bob.get(f"jobs/{j}").json() for j in b_ids]
    assert {j["status"] for j in a_jobs + b_jobs} == {"succeeded"}
    assert sampler.samples > 20
    assert 1 <= sampler.most <= 4, sampler.most
    assert most_in_scheduler <= 4
    t0 = stamp(a_jobs[0], "created_at")
    timeline = {name: [(round(stamp(j, "created_at") - t0, 1),
                        round(event_time(http, j["id"], "staging") - t0, 1),
                        round(stamp(j, "started_at") - t0, 1)) for j in jobs]
                for name, http, jobs in (("alice", alice, a_jobs), ("bob", bob, b_jobs))}
    print("created, staged, started:", json.dumps(timeline))
    assert stamp(b_jobs[0], "created_at") < event_time(alice, a_ids[5], "staging"), \
        f"submitting was too slow to test the order: {timeline}"
    # round robin: bob's first job is admitted, and starts, before alice's sixth
    assert event_time(bob, b_ids[0], "staging") < event_time(alice, a_ids[5], "staging")
    assert stamp(b_jobs[0], "started_at") < stamp(a_jobs[5], "started_at")
    # and bob does not wait for all of alice's jobs
    assert max(stamp(j, "started_at") for j in b_jobs) < max(stamp(j, "started_at")
                                                             for j in a_jobs)
