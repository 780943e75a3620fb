"""A client retrying a cut POST /jobs gets the job the first request made (Idempotency-Key),
through real middleware processes on one database; a hung Redis never hangs a POST; and
`hpcbridge server` stops cleanly on SIGTERM, SIGHUP and Ctrl-C (SIGINT) with an event
stream open."""
from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from services import Services, local_hpc

pytestmark = [pytest.mark.stack, pytest.mark.slow]

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}
BODY = {"app": "hello", "params": {"name": "Ada", "lines": 1}}


def services(tmp, stack, **kw) -> Services:
    return Services(str(tmp), stack, auth="static", static_tokens=TOKENS,
                    hpcs=[local_hpc(os.path.join(str(tmp), "data"))], **kw)


def empty_queue(svc: Services, stack: dict) -> None:
    """The rq jobs no maintainer took (none runs here): off the shared Redis."""
    import redis
    from rq import Queue
    conn = redis.Redis.from_url(stack["redis_url"])
    try:
        Queue(f"hpcbridge-test-{svc.run_id}.local", connection=conn).empty()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def pair(tmp_path_factory, stack, redis_url):
    """Two middleware processes on one database (the first's), as two hosts behind a
    balancer."""
    first = services(tmp_path_factory.mktemp("mw1"), stack).start(maintainer=False)
    second = services(tmp_path_factory.mktemp("mw2"), stack,
                      db_url=first.db_url).start(maintainer=False)
    yield first, second
    for svc in (second, first):  # the first drops its PostgreSQL database at stop
        svc.stop()
        empty_queue(svc, stack)
        assert "Traceback" not in svc.log("server"), svc.log("server")


def post(svc: Services, key: str | None, body=BODY, token="tok-alice") -> httpx.Response:
    headers = {"Authorization": f"token {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return httpx.post(f"{svc.api}/jobs", json=body, headers=headers, timeout=30)


def count_jobs(svc: Services, token="tok-alice") -> int:
    r = httpx.get(f"{svc.api}/jobs", headers={"Authorization": f"token {token}"}, timeout=30)
    return r.json()["total"]


def test_the_same_key_and_body_get_the_same_job(pair):
    svc, _ = pair
    before = count_jobs(svc)
    key = str(uuid.uuid4())
    first = post(svc, key)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    # the same request again (the client never saw the answer): the same job, no other
    again = post(svc, key, body={"params": {"lines": 1, "name": "Ada"}, "app": "hello"})
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert count_jobs(svc) == before + 1
    # without a key, each POST is a job of its own
    assert post(svc, None).json()["id"] != post(svc, None).json()["id"]


def test_the_same_key_with_another_body_is_a_422(pair):
    svc, _ = pair
    key = str(uuid.uuid4())
    job_id = post(svc, key).json()["id"]
    r = post(svc, key, body={**BODY, "params": {"name": "Bob", "lines": 1}})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "validation_error"
    assert "already used for a different request" in r.json()["message"]
    assert job_id in r.json()["message"]
    assert r.json()["details"][0]["loc"] == ["header", "Idempotency-Key"]


def test_keys_are_per_user(pair):
    svc, _ = pair
    key = str(uuid.uuid4())
    alice = post(svc, key).json()["id"]
    bob = post(svc, key, token="tok-bob")
    assert bob.status_code == 201 and bob.json()["id"] != alice


@pytest.mark.parametrize("key", ["", "x" * 201, "caf\u00e9", "a\tb"],
                         ids=["empty", "201 chars", "not ascii", "tab"])
def test_a_malformed_key_is_a_422_and_makes_no_job(pair, key):
    svc, _ = pair
    before = count_jobs(svc)
    headers = {"Authorization": "token tok-alice", "Idempotency-Key": key.encode("latin-1")}
    r = httpx.post(f"{svc.api}/jobs", json=BODY, headers=headers, timeout=30)
    assert r.status_code == 422, r.text
    assert "Idempotency-Key" in r.json()["message"]
    assert count_jobs(svc) == before
    assert post(svc, "x" * 200).status_code == 201  # the longest key there may be


def test_concurrent_posts_with_one_key_make_one_job(pair):
    """Pairs of requests with one key, at once: to one middleware, and one to each of two
    middleware processes (then the database's unique index decides)."""
    first, second = pair
    before = count_jobs(first)
    keys = [str(uuid.uuid4()) for _ in range(24)]
    targets = [(k, svc) for i, k in enumerate(keys)
               for svc in ((first, first) if i % 2 else (first, second))]
    barrier = threading.Barrier(len(targets))

    def send(target):
        key, svc = target
        barrier.wait(30)
        return key, post(svc, key)

    with ThreadPoolExecutor(len(targets)) as pool:
        answers = list(pool.map(send, targets))
    ids: dict[str, set] = {}
    for key, r in answers:
        assert r.status_code == 201, r.text
        ids.setdefault(key, set()).add(r.json()["id"])
    assert all(len(v) == 1 for v in ids.values()), ids
    assert count_jobs(first) == count_jobs(second) == before + len(keys)


# --- a hung Redis ----------------------------------------------------------------------
class BlackHole:
    """A TCP server that accepts connections and never answers: a hung Redis."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_a_hung_redis_does_not_hang_a_post(tmp_path):
    hole = BlackHole()
    svc = Services(str(tmp_path), None, auth="static", static_tokens=TOKENS,
                   extra_config=f"c.Site.redis_url = 'redis://127.0.0.1:{hole.port}/0'")
    try:
        svc.start(maintainer=False)
        t0 = time.monotonic()
        r = post(svc, str(uuid.uuid4()))
        took = time.monotonic() - t0
        assert r.status_code == 201, r.text
        assert took < 8, took  # the enqueue's deadline (2 s a step), not the 30 s client's
        assert hole.held, "the middleware never tried the queue"
        job = httpx.get(f"{svc.api}/jobs/{r.json()['id']}",
                        headers={"Authorization": "token tok-alice"}, timeout=10).json()
        assert job["status"] == "queued"  # in the store: the reconciliation sends it on
        assert "could not enqueue" in svc.log("server")
    finally:
        svc.stop()
        hole.close()


# --- a clean stop ----------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT],
                         ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_the_server_stops_cleanly_on(tmp_path, sig):
    svc = Services(str(tmp_path), None, auth="static", static_tokens=TOKENS,
                   extra_config="c.HPCBridgeServer.log_level = 'INFO'").start(maintainer=False)
    proc = svc.procs["server"]
    try:
        connected, ended = threading.Event(), threading.Event()

        def listen():
            try:
                with httpx.stream("GET", f"{svc.api}/events/stream", timeout=30,
                                  headers={"Authorization": "token tok-alice"}) as r:
                    for line in r.iter_lines():
                        if line.startswith(": connected"):
                            connected.set()
            except httpx.TransportError:
                pass
            ended.set()

        threading.Thread(target=listen, daemon=True).start()
        assert connected.wait(10)
        t0 = time.monotonic()
        os.killpg(proc.pid, sig)
        assert proc.wait(15) == 0, svc.log("server")
        assert time.monotonic() - t0 < 5
        assert ended.wait(5), "the event stream stayed open"
        log = svc.log("server")
        assert "Traceback" not in log and "stopping the middleware" in log, log
    finally:
        svc.stop()
