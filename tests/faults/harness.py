"""What the fault cases share: private Redis and sshd instances (so that breaking them never
touches the stack's, which other suites use at the same time), a TCP server that never speaks
SSH, a job fleet of two users with short and longer jobs, and the summary line of a case.

The middleware and maintainer are the real processes of tests/services.py; what Slurm itself
says is read over the stack's own sshd (maintainer_support.remote), never through hpcbridge.
"""
from __future__ import annotations

import copy
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import redis
from maintainer_support import FINAL, remote, slurm_jobs_of, token
from services import Services, free_port

SUMMARIES: list[str] = []  # every case's line, printed again at the end of the run (conftest)
LOST_BY_SCHEDULER = re.compile(r"scheduler.*(lost|forgot|no longer knows)", re.I)


# --- processes ---------------------------------------------------------------------------------
def descendants(pid: int) -> list[int]:
    """Every live descendant of pid (from /proc), children before grandchildren."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(0), [])
        out += kids
        todo += kids
    return out


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal pid and every process it started (sshd's sessions and a maintainer's workers
    leave the process group): the parent first, so that it restarts nothing."""
    for p in [pid, *descendants(pid)]:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def gone(proc: subprocess.Popen, timeout: float = 10) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# --- private Redis, sshd, and a hung "HPC" -----------------------------------------------------
class PrivateRedis:
    """A redis-server of this test only, without persistence: a restart comes back empty."""

    def __init__(self, tmp: str):
        self.tmp, self.port, self.proc = tmp, free_port(), None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)

    def start(self) -> PrivateRedis:
        log = open(os.path.join(self.tmp, f"redis-{self.port}.log"), "ab")
        self.proc = subprocess.Popen(
            ["/usr/bin/redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.tmp],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"private redis on {self.port} did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            gone(self.proc)


class PrivateSshd:
    """The stack's login node on a second port: the same host key, users and Slurm, its own
    sshd process (and sessions) to kill."""

    def __init__(self, tmp: str, stack: dict):
        self.tmp, self.port, self.proc = tmp, free_port(), None
        ssh_dir = os.path.join(stack["stack_dir"], "ssh")
        with open(os.path.join(ssh_dir, "sshd_config")) as f:
            lines = [ln for ln in f.read().splitlines()
                     if not ln.startswith(("Port ", "PidFile "))]
        self.config = os.path.join(tmp, f"sshd-{self.port}.conf")
        with open(self.config, "w") as f:
            f.write("\n".join([f"Port {self.port}",
                               f"PidFile {tmp}/sshd-{self.port}.pid", *lines]) + "\n")
        with open(os.path.join(ssh_dir, "ssh_host_ed25519_key.pub")) as f:
            key = " ".join(f.read().split()[:2])
        self.known_hosts = os.path.join(tmp, f"known_hosts-{self.port}")
        with open(self.known_hosts, "w") as f:
            f.write(f"[127.0.0.1]:{self.port} {key}\n")
        self.stack = copy.deepcopy(stack)
        self.stack["ssh"].update(port=self.port, known_hosts=self.known_hosts)

    def start(self) -> PrivateSshd:
        os.makedirs("/run/sshd", exist_ok=True)
        self.proc = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-f", self.config, "-E",
             os.path.join(self.tmp, f"sshd-{self.port}.log")], start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 1) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"private sshd on {self.port} did not start")

    def kill(self) -> None:
        """Like a crashed login node: sshd and every session it serves die at once."""
        if self.proc is not None and self.proc.poll() is None:
            kill_tree(self.proc.pid)
            gone(self.proc)


class HungServer:
    """Accepts TCP connections and never says a word (an HPC whose sshd hangs)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for s in self.held:
            s.close()


# --- the jobs of a case ------------------------------------------------------------------------
def job_params(i: int, user: str) -> dict:
    """Every third job runs ~12 s, the others ~1 s; the greeting names the job."""
    lines, delay = (2, 6) if i % 3 == 0 else (1, 0)
    return {"name": f"{user}-{i}", "lines": lines, "delay": delay}


@dataclass
class Fleet:
    """The jobs one case submits (alice and bob in turn, the hello app) and what became of
    them. `stack` is the real one: sacct is asked over the stack's own sshd."""

    svc: Services
    stack: dict
    app: str = "hello"
    hpc: str = "slurm"
    jobs: dict = field(default_factory=dict)  # id -> (user, expected greeting)
    long_cpus: int = 1
    start: float = field(default_factory=time.time)
    final: dict = field(default_factory=dict)  # id -> the job when last seen, or None (404)

    def client(self, user: str, timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.svc.api + "/", timeout=timeout,
                            headers={"Authorization": f"token {token(self.stack, user)}"})

    def post(self, i: int, key: str | None = None, timeout: float = 30) -> str:
        """POST one job (raises on a transport error or a refusal); its id."""
        user = ("alice", "bob")[i % 2]
        params = job_params(i, user)
        resources = {"cpus": self.long_cpus} if params["lines"] > 1 else {}
        headers = {"Idempotency-Key": key} if key else {}
        with self.client(user, timeout) as http:
            r = http.post("jobs", headers=headers, json={
                "app": self.app, "hpc": self.hpc, "params": params, "resources": resources})
        if r.status_code not in (200, 201):
            raise AssertionError(f"POST /jobs answered {r.status_code}: {r.text}")
        job_id = r.json()["id"]
        self.jobs[job_id] = (user, f"Hello, {params['name']}!\n")
        return job_id

    def submit(self, n: int, first: int = 0) -> list[str]:
        return [self.post(i) for i in range(first, first + n)]

    def look(self, ids=None) -> Counter:
        """GET every job (or those of ids) once: a Counter of statuses ("gone" for a 404,
        "unknown" when the middleware does not answer)."""
        seen: Counter = Counter()
        clients = {u: self.client(u, 10) for u in ("alice", "bob")}
        try:
            for job_id in ids if ids is not None else list(self.jobs):
                try:
                    r = clients[self.jobs[job_id][0]].get(f"jobs/{job_id}")
                except httpx.HTTPError:
                    seen["unknown"] += 1
                    continue
                if r.status_code == 404:
                    self.final[job_id] = None
                    seen["gone"] += 1
                elif r.status_code == 200:
                    self.final[job_id] = r.json()
                    seen[r.json()["status"]] += 1
                else:
                    seen["unknown"] += 1
        finally:
            for c in clients.values():
                c.close()
        return seen

    def until(self, condition, timeout: float) -> Counter:
        """Look until condition(Counter of statuses) holds or timeout passes; the last look."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.look()
            if condition(seen) or time.monotonic() > deadline:
                return seen
            time.sleep(0.3)

    def maintainer_exited(self) -> bool:
        proc = self.svc.procs.get("maintainer")
        return proc is not None and proc.poll() is not None

    def wait(self, timeout: float) -> Counter:
        """Until every job is final (or gone), at most timeout seconds; no longer once the
        maintainer process itself has exited (nothing would move any more)."""
        def done(seen):
            return (sum(seen[s] for s in (*FINAL, "gone")) == len(self.jobs)
                    or self.maintainer_exited())
        return self.until(done, timeout)

    def result_ok(self, job_id: str) -> bool:
        user, greeting = self.jobs[job_id]
        with self.client(user) as http:
            r = http.get(f"jobs/{job_id}/results/result/greeting.txt")
        return r.status_code == 200 and r.text == greeting


def completed_names(stack: dict, start: float) -> set[str]:
    """Names of the Slurm jobs accounting shows COMPLETED since start, every row (-D: a row
    whose id the controller gave out again is hidden without it)."""
    since = datetime.fromtimestamp(start - 60).strftime("%Y-%m-%dT%H:%M:%S")
    out = remote(stack, f"sacct -X -n -P -D -S {since} --format=JobName,State")
    return {name for name, _, state in (ln.partition("|") for ln in out.splitlines())
            if state.startswith("COMPLETED")}


def count(fleet: Fleet, scheduler_may_lose: bool = False) -> dict:
    """The counters of the summary line, from the jobs as last seen and from sacct."""
    ids = list(fleet.jobs)
    jobs = {i: fleet.final.get(i) for i in ids}
    status = {i: (j or {}).get("status") for i, j in jobs.items()}
    succeeded = [i for i in ids if status[i] == "succeeded"]
    scheduler_lost = [i for i in ids if status[i] == "failed" and scheduler_may_lose
                      and LOST_BY_SCHEDULER.search(jobs[i].get("message") or "")]
    slurm = slurm_jobs_of(fleet.stack, fleet.start, ids, ran=succeeded, settle=60)
    # "lost" by a job that ran to its end is a wrong failure: the scheduler knew its name
    ran = completed_names(fleet.stack, fleet.start) if scheduler_lost else set()
    lost_but_ran = [i for i in scheduler_lost if f"hpcbridge-{i}" in ran]
    scheduler_lost = [i for i in scheduler_lost if i not in lost_but_ran]
    c = {"jobs": len(ids),
         "ended": sum(s in FINAL for s in status.values()),
         "stuck": sum(jobs[i] is not None and status[i] not in FINAL for i in ids),
         "duplicated": sum(len(states) > 1 for states in slurm.values()),
         "wrongly_failed": sum(status[i] in ("failed", "cancelled")
                               and i not in scheduler_lost for i in ids),
         "lost": sum(jobs[i] is None for i in ids),
         "no_results": sum(not fleet.result_ok(i) for i in succeeded)}
    if scheduler_may_lose:
        c["lost_by_scheduler"] = len(scheduler_lost)
        c["lost_but_ran"] = len(lost_but_ran)
    return c


def summary(fault: str, counts: dict, **extra) -> str:
    """The case's one line; also kept for the end-of-run report."""
    line = f"fault={fault} " + " ".join(f"{k}={v}" for k, v in {**counts, **extra}.items())
    SUMMARIES.append(line)
    print(line)
    return line


def diagnose(fleet: Fleet, limit: int = 6) -> str:
    """What went wrong, for the assertion message: the odd jobs and the maintainer's log."""
    odd = [(i, j and j["status"], j and j.get("message")) for i, j in fleet.final.items()
           if not j or j["status"] != "succeeded"][:limit]
    return f"odd jobs: {odd}\nmaintainer log:\n{fleet.svc.log('maintainer')[-3000:]}"


def check(fault: str, fleet: Fleet, timeout: float, scheduler_may_lose=False, **extra) -> str:
    """Wait for the fleet, print the summary line, assert the case's promises."""
    fleet.wait(timeout)
    counts = count(fleet, scheduler_may_lose)
    if fleet.maintainer_exited():
        extra["maintainer_exited"] = 1
    line = summary(fault, counts, **extra)
    bad = {k: counts[k] for k in ("stuck", "duplicated", "wrongly_failed", "lost",
                                  "no_results")}
    assert bad == dict.fromkeys(bad, 0), f"{line}\n{diagnose(fleet)}"
    return line


def at(seen: Counter) -> str:
    """Where the jobs stood when the fault struck, for the summary line."""
    return ",".join(f"{k}:{v}" for k, v in sorted(seen.items()))


def unique_key() -> str:
    return uuid.uuid4().hex
