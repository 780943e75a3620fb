"""The maintainer against the real stack: the middleware and the maintainer pool as
processes (tests/services.py), JupyterHub tokens, Redis, Slurm with accounting behind sshd.

Other suites share the same Slurm: every test has its own work root and Redis prefix, and
only ever looks at (or cancels) Slurm jobs named after its own hpcbridge jobs.
"""
from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from datetime import datetime

import httpx
import pytest
from services import Services, remove_remote, slurm_hpc, wait_for_sshd

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(600)]

LIFECYCLE = ["queued", "staging", "staged", "submitted", "running", "finishing", "results"]
FINAL = ("succeeded", "failed", "cancelled")
SLURM_FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
               "PREEMPTED", "BOOT_FAIL", "DEADLINE")


# --- the login node ---------------------------------------------------------------------------
def remote(stack: dict, command: str, timeout: float = 60) -> str:
    """Run a shell command on the login node as hpcuser (the ssh client, its own connection)."""
    s = stack["ssh"]
    argv = ["ssh", "-p", str(s["port"]), "-i", s["key"], "-o", f"UserKnownHostsFile={s['known_hosts']}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
            f"{s['user']}@{s['host']}", command]
    for attempt in range(5):  # another suite restarts sshd now and then
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 255:
            if result.returncode != 0:
                raise AssertionError(f"{command!r} failed: {result.stderr}")
            return result.stdout
        time.sleep(1 + attempt)
    raise AssertionError(f"ssh failed: {result.stderr}")


def slurm_since(start: float) -> str:
    return datetime.fromtimestamp(start - 60).strftime("%Y-%m-%dT%H:%M:%S")


def sacct_by_name(stack: dict, start: float) -> dict[str, list[str]]:
    """Job name → the states of every Slurm job of that name since `start` (accounting)."""
    out = remote(stack, f"sacct -X -n -P -S {slurm_since(start)} --format=JobName,State")
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        name, _, state = line.partition("|")
        found.setdefault(name, []).append(state)
    return found


def slurm_jobs_of(stack: dict, start: float, ids, ran=None,
                  settle: float = 90) -> dict[str, list[str]]:
    """The Slurm jobs (states) of each of `ids`, once accounting shows every job of `ran`
    (default: all ids) and shows them all as ended (it lags the controller by seconds)."""
    names = {f"hpcbridge-{i}": i for i in ids}
    ran = set(ids if ran is None else ran)
    deadline = time.monotonic() + settle
    while True:
        found = sacct_by_name(stack, start)
        ours = {names[n]: states for n, states in found.items() if n in names}
        settled = ran <= set(ours) and all(
            s.startswith(SLURM_FINAL) for states in ours.values() for s in states)
        if settled or time.monotonic() > deadline:
            return {i: ours.get(i, []) for i in ids}
        time.sleep(2)


def squeue_names(stack: dict) -> list[str]:
    return remote(stack, "squeue -h -o %j").split()


# --- services -----------------------------------------------------------------------------------
@pytest.fixture
def slurm_services(tmp_path, stack, redis_url, hub, request):
    """A factory: Services with a Slurm HPC of the stack, stopped and cleaned up after."""
    wait_for_sshd(stack)  # another suite restarts sshd now and then
    request.getfixturevalue("ssh_target")
    started: list[Services] = []

    def make(capacity=4, workers=2, maintainer=True, extra_hpcs=(), **hpc) -> Services:
        svc = Services(str(tmp_path / f"s{len(started)}"), stack, workers=workers, auth="hub")
        svc.hpcs = [slurm_hpc(stack, svc.run_id, capacity=capacity, **hpc), *extra_hpcs]
        started.append(svc)
        return svc.start(maintainer=maintainer)

    yield make
    for svc in started:
        try:
            cancel_leftovers(svc, stack)
        finally:
            svc.stop()
            remove_remote(stack, f"hpcbridge-it/{svc.run_id}")


def cancel_leftovers(svc: Services, stack: dict) -> None:
    """scancel the Slurm jobs of this test's hpcbridge jobs that still run (never others')."""
    try:
        admin = svc.client(stack["hub"]["tokens"]["admin"])
        jobs = admin.get("admin/jobs", params={"limit": 1000}).json()["jobs"]
    except (httpx.HTTPError, KeyError, ValueError):
        return
    ours = {f"hpcbridge-{j['id']}" for j in jobs}
    ids = [line.split()[0] for line in remote(stack, "squeue -h -o '%i %j'").splitlines()
           if len(line.split()) == 2 and line.split()[1] in ours]
    if ids:
        remote(stack, "scancel " + " ".join(ids))


def token(stack, user):
    return stack["hub"]["tokens"][user]


def make_app(tmp_path, name: str, command: str, hpcs=("slurm",), **manifest) -> str:
    folder = tmp_path / "apps" / name
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({
        "name": name, "execution_stage": command, "supported_hpc": list(hpcs),
        "slurm_input_rules": {"time": {"min": 1, "max": 10, "default_value": 2},
                              "cpus": {"min": 1, "max": 8, "default_value": 1}},
        **manifest}))
    return str(folder)


def register(svc: Services, stack, folder: str) -> str:
    r = svc.client(token(stack, "admin")).post("apps", json={"source": folder})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def submit(http: httpx.Client, app: str, hpc="slurm", resources=None, **params) -> str:
    r = http.post("jobs", json={"app": app, "hpc": hpc, "params": params,
                                "resources": resources or {}})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def event_types(http, job_id) -> list[str]:
    return [e["type"] for e in http.get(f"jobs/{job_id}/events").json()]


def wait_all(svc, http, ids, timeout=300) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    return {j: svc.wait_job(http, j, timeout=max(1, deadline - time.monotonic())) for j in ids}


def stats(svc: Services, redis_url: str, hpc: str = "slurm") -> tuple[dict, list[dict]]:
    import redis
    r = redis.Redis.from_url(redis_url)
    key = f"hpcbridge-test-{svc.run_id}:stats:{hpc}"
    totals = {k.decode(): v.decode() for k, v in r.hgetall(key).items()}
    cycles = [json.loads(c) for c in r.lrange(f"{key}:cycles", 0, -1)]
    return totals, cycles


def stamp(job: dict, field: str) -> float:
    return datetime.fromisoformat(job[field]).timestamp()


def event_time(http, job_id: str, type_: str) -> float:
    for e in http.get(f"jobs/{job_id}/events").json():
        if e["type"] == type_:
            return datetime.fromisoformat(e["time"]).timestamp()
    raise AssertionError(f"job {job_id} has no {type_} event")


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
    totals, cycles = stats(svc, redis_url)
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
    fail = register(svc, stack, make_app(tmp_path, "exit3", "echo failing >&2\nexit 3"))
    slow = register(svc, stack, make_app(tmp_path, "slow", "echo started\nsleep 120"))
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
    sleeper = register(svc, stack, make_app(tmp_path, "sleeper", "echo up\nsleep 300"))
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
    short = register(svc, stack, make_app(tmp_path, "short", "sleep 3"))
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
