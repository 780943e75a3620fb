"""Helpers of the maintainer's end-to-end tests (local handler and real Slurm): apps and
jobs through the REST API, the poller's per-cycle statistics, and what Slurm itself says
(over the ssh client, never through hpcbridge). Fixtures: conftest.py."""
from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime
from email import message_from_bytes, policy

import httpx
from services import Services

LIFECYCLE = ["queued", "staging", "staged", "submitted", "running", "finishing", "results"]
FINAL = ("succeeded", "failed", "cancelled")
SLURM_FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
               "PREEMPTED", "BOOT_FAIL", "DEADLINE")
SLURM_RULES = {"time": {"min": 1, "max": 10, "default_value": 2},
               "cpus": {"min": 1, "max": 8, "default_value": 1}}


# --- apps and jobs through the API ------------------------------------------------------------
def make_app(tmp_path, name: str, command: str, hpcs=("slurm",), files: int = 0,
             **manifest) -> str:
    """An app folder: `command` as its execution stage, `files` filler files of 1 kB."""
    folder = tmp_path / "apps" / name
    folder.mkdir(parents=True)
    for i in range(files):
        (folder / f"f{i:04d}.txt").write_text("x" * 1000)
    if "slurm" in hpcs:
        manifest.setdefault("slurm_input_rules", SLURM_RULES)
    (folder / "manifest.json").write_text(json.dumps({
        "name": name, "execution_stage": command, "supported_hpc": list(hpcs), **manifest}))
    return str(folder)


def register(svc: Services, admin_token: str, folder: str) -> str:
    r = svc.client(admin_token).post("apps", json={"source": folder})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def token(stack: dict, user: str) -> str:
    """The stack's JupyterHub token of alice, bob or admin."""
    return stack["hub"]["tokens"][user]


def add_app(svc, stack, tmp_path, name: str, command: str, **manifest) -> str:
    """Register a new app (make_app) as the hub's admin; its id."""
    return register(svc, token(stack, "admin"), make_app(tmp_path, name, command, **manifest))


def submit(http: httpx.Client, app: str, hpc="slurm", resources=None, **params) -> str:
    r = http.post("jobs", json={"app": app, "hpc": hpc, "params": params,
                                "resources": resources or {}})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def event_types(http, job_id) -> list[str]:
    return [e["type"] for e in http.get(f"jobs/{job_id}/events").json()]


def event_time(http, job_id: str, type_: str) -> float:
    for e in http.get(f"jobs/{job_id}/events").json():
        if e["type"] == type_:
            return datetime.fromisoformat(e["time"]).timestamp()
    raise AssertionError(f"job {job_id} has no {type_} event")


def stamp(job: dict, field: str) -> float:
    return datetime.fromisoformat(job[field]).timestamp()


def wait_all(svc, http, ids, timeout=300) -> dict[str, dict]:
    """Every job of `ids` once final, all within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    return {j: svc.wait_job(http, j, timeout=max(1, deadline - time.monotonic())) for j in ids}


def cycle_stats(svc: Services, redis, hpc: str) -> tuple[dict, list[dict]]:
    """The poller's statistics of an HPC (maintainer/stats.py): totals, recent cycles."""
    key = f"hpcbridge-test-{svc.run_id}:stats:{hpc}"
    totals = {k.decode(): v.decode() for k, v in redis.hgetall(key).items()}
    return totals, [json.loads(c) for c in redis.lrange(f"{key}:cycles", 0, -1)]


# --- Slurm, as the login node sees it ---------------------------------------------------------
def remote(stack: dict, command: str, timeout: float = 60) -> str:
    """Run a shell command on the login node as hpcuser (the ssh client, its own connection)."""
    s = stack["ssh"]
    argv = ["ssh", "-p", str(s["port"]), "-i", s["key"], "-o",
            f"UserKnownHostsFile={s['known_hosts']}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", f"{s['user']}@{s['host']}",
            command]
    for attempt in range(5):  # another suite restarts sshd now and then
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 255:
            if result.returncode != 0:
                raise AssertionError(f"{command!r} failed: {result.stderr}")
            return result.stdout
        time.sleep(1 + attempt)
    raise AssertionError(f"ssh failed: {result.stderr}")


def sacct_by_name(stack: dict, start: float) -> dict[str, list[str]]:
    """Job name → the states of every Slurm job of that name since `start` (accounting)."""
    since = datetime.fromtimestamp(start - 60).strftime("%Y-%m-%dT%H:%M:%S")
    out = remote(stack, f"sacct -X -n -P -S {since} --format=JobName,State")
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


class Mailbox:
    """aiosmtpd's handler: every mail the SMTP server accepts, with its arrival time."""

    def __init__(self):
        self.mails = []

    async def handle_DATA(self, server, session, envelope):
        self.mails.append({"at": time.time(), "to": envelope.rcpt_tos,
                           "message": message_from_bytes(envelope.content,
                                                         policy=policy.default)})
        return "250 OK"

    def to(self, address: str) -> list[dict]:
        return [m for m in self.mails if address in m["to"]]
