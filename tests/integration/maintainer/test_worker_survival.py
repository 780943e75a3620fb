"""The maintainer pool survives its own dependencies: a Redis restarted empty while tasks
run (the workers wait, reconnect and refill the queues from the store — nobody restarts
anything), and a worker process killed outright (the supervisor starts a new one).

Each case runs the real middleware and `hpcbridge maintainer --workers 2` on the local
handler against a PRIVATE redis-server started here on a free port (the stack's Redis is
shared with other suites and is never touched)."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil
import pytest
import redis
from maintainer_support import make_app, register, wait_all
from maintainer_support import submit as submit_to
from services import Services, free_port, local_hpc

pytestmark = [pytest.mark.slow]

REDIS_SERVER = "/usr/bin/redis-server"
TOKENS = {"t-alice": "alice", "t-bob": "bob", "t-admin": "admin"}


class PrivateRedis:
    """A redis-server of this test only, without persistence: a restart loses everything."""

    def __init__(self, tmp):
        self.port, self.tmp, self.proc = free_port(), str(tmp), None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", self.tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def private_redis(tmp_path):
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip("no /usr/bin/redis-server")
    server = PrivateRedis(tmp_path).start()
    yield server
    server.kill()


@pytest.fixture
def pool(tmp_path, private_redis):
    """The middleware and a maintainer pool of two workers on the private Redis."""
    svc = Services(str(tmp_path / "s"), None, auth="static", static_tokens=TOKENS, workers=2,
                   extra_config=f"c.Site.redis_url = {private_redis.url!r}\n"
                                "c.Maintainer.resend_seconds = 60.0\n")
    svc.hpcs = [local_hpc(svc.data_dir, capacity=8, poll_interval=0.3)]
    svc.start()
    yield svc
    svc.stop()


def workers_of(svc: Services, count: int = 2, timeout: float = 20) -> list[psutil.Process]:
    """The pool's worker processes (children of `hpcbridge maintainer`), once `count` run."""
    parent = psutil.Process(svc.procs["maintainer"].pid)
    deadline = time.monotonic() + timeout
    while True:
        kids = [p for p in parent.children() if p.status() != psutil.STATUS_ZOMBIE
                and "spawn_main" in " ".join(p.cmdline())]
        if len(kids) == count or time.monotonic() > deadline:
            return kids
        time.sleep(0.2)


def submit_mix(svc: Services, tmp_path, n: int = 30) -> list[str]:
    """n jobs from two users, two thirds short, one third of 3 s; each stages an app of
    600 files, so that the workers are busy with tasks (not idle on their queues)."""
    app = register(svc, "t-admin", make_app(
        tmp_path, "bulky", "sleep $param_t", hpcs=("local",), files=600,
        param_rules={"t": {"type": "float", "min": 0, "max": 10, "default_value": 0}}))
    alice, bob = svc.client("t-alice"), svc.client("t-bob")
    return [submit_to(alice if i % 2 else bob, app, hpc="local", t=3 if i % 3 == 0 else 0.2)
            for i in range(n)]


def assert_all_succeeded(svc: Services, ids: list[str], timeout: float) -> None:
    admin = svc.client("t-admin")
    jobs = wait_all(svc, admin, ids, timeout=timeout)
    stuck = {i: j["status"] for i, j in jobs.items() if j["status"] != "succeeded"}
    assert not stuck, f"{stuck}\n{svc.log('maintainer')}"


def test_workers_survive_redis_restarted_empty(pool, private_redis, tmp_path):
    svc = pool
    before = {p.pid for p in workers_of(svc)}
    assert len(before) == 2
    ids = submit_mix(svc, tmp_path)
    time.sleep(1.5)  # some staged or running, most queued
    private_redis.kill()
    time.sleep(3)
    private_redis.start()  # empty: every queue, claim and lease is gone
    assert_all_succeeded(svc, ids, timeout=45)
    after = {p.pid for p in workers_of(svc)}
    assert after == before, "a worker process was replaced"
    log = svc.log("maintainer", tail=None)
    assert "waiting for Redis" in log and "Redis is back" in log
    assert "exited with code" not in log
    # once per outage and worker, not once per retry
    assert 1 <= log.count("waiting for Redis") <= 2, log


def test_a_killed_worker_is_started_again(pool, tmp_path):
    svc = pool
    victims = workers_of(svc)
    assert len(victims) == 2
    ids = submit_mix(svc, tmp_path)
    time.sleep(1.0)
    os.kill(victims[0].pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pids = {p.pid for p in workers_of(svc, timeout=0)}
        if len(pids) == 2 and victims[0].pid not in pids:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("no new worker:\n" + svc.log("maintainer"))
    assert victims[1].pid in pids  # the other one kept running
    assert "exited with code -9" in svc.log("maintainer")
    assert_all_succeeded(svc, ids, timeout=45)


def test_the_pool_stops_on_sighup(pool):
    svc = pool
    workers = workers_of(svc)
    os.kill(svc.procs["maintainer"].pid, signal.SIGHUP)
    assert svc.procs["maintainer"].wait(20) == 0
    gone, alive = psutil.wait_procs(workers, timeout=5)
    assert not alive
