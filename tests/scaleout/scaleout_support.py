"""The scale-out site of issue 21 on the real stack: two middleware processes, three
maintainer processes, one PostgreSQL, one Redis, one shared artifact folder.

Every process reads the same hpcbridge_config.py (written by tests/services.py, with the
database, the HPC and the artifact store added) and gets its own port and `--data-dir` on
its command line: as on separate hosts, nothing but the database, Redis and the artifact
folder is shared.
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from services import Services, free_port, on_login_node

FINAL = ("succeeded", "failed", "cancelled")
REACHED_RUNNING = ("running", "finishing", *FINAL)
SLURM_FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
               "PREEMPTED", "BOOT_FAIL", "DEADLINE")
MIDDLEWARES = ("A", "B")
MAINTAINERS = ("m1", "m2", "m3")
SUMMARIES: list[str] = []  # the run's summary line, printed again at the end (conftest)


def shared_artifacts_config(root: str) -> str:
    """Config lines pointing every process at one artifact folder, or "" while the
    ArtifactStore (issue 21, hpcbridge/artifacts.py) is not in the code yet."""
    if importlib.util.find_spec("hpcbridge.artifacts") is None:
        return ""
    return ("c.Site.artifact_store_class = 'hpcbridge.artifacts.SharedFolderArtifacts'\n"
            f"c.SharedFolderArtifacts.root = {root!r}\n")


@dataclass
class ScaleOutSite(Services):
    """Services with two middlewares (A, B) and three maintainers (m1..m3)."""

    pg_url: str = ""
    ports: dict = field(default_factory=lambda: {m: free_port() for m in MIDDLEWARES})

    @property
    def artifacts(self) -> str:
        return os.path.join(self.tmp, "shared-artifacts")

    @property
    def shared_store(self) -> bool:
        return bool(shared_artifacts_config(self.artifacts))

    def host_dir(self, name: str) -> str:
        return os.path.join(self.tmp, f"host-{name}")

    def api_of(self, mw: str) -> str:
        return f"http://127.0.0.1:{self.ports[mw]}/api/v1"

    def http(self, mw: str, token: str, timeout: float = 10) -> httpx.Client:
        return httpx.Client(base_url=self.api_of(mw) + "/", timeout=timeout,
                            headers={"Authorization": f"token {token}"})

    def start_site(self, admin_token: str, timeout: float = 60) -> ScaleOutSite:
        os.makedirs(self.artifacts, exist_ok=True)
        self.extra_config = (f"c.Site.db_url = {self.pg_url!r}\n"
                             + shared_artifacts_config(self.artifacts))
        self.write_config()
        # A first: it migrates the empty database before anyone else opens it
        for mw in MIDDLEWARES:
            os.makedirs(self.host_dir(mw), exist_ok=True)
            self._spawn(mw, "server", "--port", str(self.ports[mw]),
                        "--data-dir", self.host_dir(mw))
            self.wait_up(mw, timeout)
        for m in MAINTAINERS:
            os.makedirs(self.host_dir(m), exist_ok=True)
            self._spawn(m, "maintainer", "--workers", "1", "--data-dir", self.host_dir(m))
        self.wait_workers(admin_token, timeout)
        return self

    def wait_up(self, mw: str, timeout: float) -> None:
        self.wait_health(timeout, mw, self.api_of(mw))

    def worker_health(self, admin_token: str) -> list[dict]:
        with self.http("A", admin_token) as http:
            r = http.get("admin/workers")
        r.raise_for_status()
        return r.json()

    def wait_workers(self, admin_token: str, timeout: float) -> None:
        """Until each maintainer process heartbeats and one of them polls the HPC."""
        pids = {self.procs[m].pid for m in MAINTAINERS}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in MAINTAINERS:
                if self.procs[m].poll() is not None:
                    raise RuntimeError(f"maintainer {m} exited:\n{self.log(m)}")
            alive = [w for w in self.worker_health(admin_token) if w["alive"] and w["pid"] in pids]
            if len(alive) == len(pids) and any(w["leases"] for w in alive):
                return
            time.sleep(0.5)
        raise RuntimeError("maintainers not all up:\n" + "\n".join(
            f"--- {m}\n{self.log(m, 2000)}" for m in MAINTAINERS))

    def poller(self, admin_token: str, hpc: str) -> str:
        """The maintainer whose worker holds the HPC's poll lease (m1 if none does)."""
        by_pid = {self.procs[m].pid: m for m in MAINTAINERS}
        for w in self.worker_health(admin_token):
            if w["alive"] and hpc in w["leases"] and w["pid"] in by_pid:
                return by_pid[w["pid"]]
        return MAINTAINERS[0]

    def kill(self, name: str) -> None:
        """SIGKILL a process (and its process group): a host that vanished."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None


# --- the event stream of middleware A ----------------------------------------------------------
class StreamWatcher:
    """Reads `GET /events/stream?all=1` (the admin's view of every job) in a thread and keeps
    every message: job id → [(event id, status)]. A cut stream is resumed with
    Last-Event-ID, as the SDK does."""

    def __init__(self, api: str, token: str):
        self.url, self.token = f"{api}/events/stream", token
        self.messages: dict[str, list[tuple[int, str]]] = {}
        self.event_ids: list[int] = []
        self.last_id: int | None = None
        self.reconnects = 0
        self.connected = threading.Event()
        self.stopping = threading.Event()
        self.error = ""
        self.thread = threading.Thread(target=self.run, name="scaleout-stream", daemon=True)

    def start(self, timeout: float = 15) -> StreamWatcher:
        self.thread.start()
        if not self.connected.wait(timeout):
            raise RuntimeError(f"event stream on A did not connect: {self.error}")
        return self

    def run(self) -> None:
        while not self.stopping.is_set():
            headers = {"Authorization": f"token {self.token}"}
            if self.last_id is not None:
                headers["Last-Event-ID"] = str(self.last_id)
            try:
                # read bound above the server's 15 s keepalive: a silent stream is a dead one
                with httpx.stream("GET", self.url, params={"all": "1"}, headers=headers,
                                  timeout=httpx.Timeout(10, read=25)) as r:
                    if r.status_code != 200:
                        self.error = f"{r.status_code}: {r.read()[:300]!r}"
                        time.sleep(1)
                        continue
                    self.read(r.iter_lines())
            except httpx.HTTPError as exc:
                self.error = f"{type(exc).__name__}: {exc}"
            if not self.stopping.is_set():
                self.reconnects += 1
                time.sleep(0.5)

    def read(self, lines) -> None:
        event, data, eid = "", "", None
        for line in lines:
            if self.stopping.is_set():
                return
            if line.startswith(": connected"):
                self.connected.set()
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
            elif line.startswith("id:"):
                eid = int(line[3:].strip())
            elif line == "":
                if eid is not None:
                    self.last_id = eid
                if event == "job" and data and eid is not None:
                    job = json.loads(data)
                    self.messages.setdefault(job["id"], []).append((eid, job["status"]))
                    self.event_ids.append(eid)
                event, data, eid = "", "", None

    def stop(self) -> None:
        self.stopping.set()


# --- Slurm, as the login node sees it ----------------------------------------------------------
def slurm_jobs_by_name(stack: dict, start: float, ids, settle: float) -> dict[str, list[str]]:
    """The Slurm jobs (states) named after each of `ids` since `start`, once accounting shows
    every id with only final states (sacct lags slurmctld by seconds), at most `settle` s."""
    names = {f"hpcbridge-{i}": i for i in ids}
    since = datetime.fromtimestamp(start - 60).strftime("%Y-%m-%dT%H:%M:%S")
    deadline = time.monotonic() + settle
    while True:
        result = on_login_node(stack, f"sacct -X -n -P -S {since} --format=JobName,State",
                               timeout=30)
        ours: dict[str, list[str]] = {}
        if result.returncode == 0:
            for line in result.stdout.splitlines():
                name, _, state = line.partition("|")
                if name in names:
                    ours.setdefault(names[name], []).append(state)
        settled = len(ours) == len(names) and all(
            s.startswith(SLURM_FINAL) for states in ours.values() for s in states)
        if settled or time.monotonic() > deadline:
            return {i: ours.get(i, []) for i in ids}
        time.sleep(2)
