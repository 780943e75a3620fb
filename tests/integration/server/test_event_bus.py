"""Events pushed through Redis pub/sub (server/eventbus.py) on the real stack.

Two middleware processes on one PostgreSQL database and the stack's Redis, a maintainer
running a Slurm job: a stream on middleware A shows every change of a job submitted
through B, in order, and its log lines as `event: log`, all long before the streams'
fallback read (60 s here) could have brought them; a stream resumed with Last-Event-ID
gets exactly the rest. Then the subscriptions are killed on Redis: both processes
subscribe again and the next job's events are pushed again. On SQLite, one middleware:
events written without a notice arrive through the fallback read, also while the
subscription is gone."""
from __future__ import annotations

import json
import shutil
import threading
import time

import httpx
import pytest
import redis
from services import Services, slurm_hpc

from hpcbridge.server.store import Store

pytestmark = [pytest.mark.stack, pytest.mark.slow]

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}
ALICE = {"Authorization": "token tok-alice"}


class Reader:
    """A stream read in a thread: (arrival time, event, id, data) of every message."""

    def __init__(self, api: str, headers: dict | None = None):
        self.api, self.headers = api, {**ALICE, **(headers or {})}
        self.got: list[tuple[float, str, int | None, dict]] = []
        self.errors: list[str] = []
        self.connected, self.stop = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        kind, event_id, data = "message", None, None
        try:
            with httpx.stream("GET", f"{self.api}/events/stream", headers=self.headers,
                              timeout=httpx.Timeout(10, read=30)) as r:
                assert r.status_code == 200, r.read()
                for line in r.iter_lines():
                    if self.stop.is_set():
                        return
                    if line.startswith(": connected"):
                        self.connected.set()
                    elif line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("id: "):
                        event_id = int(line[4:])
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                    elif line == "" and data is not None:
                        self.got.append((time.monotonic(), kind, event_id, data))
                        kind, event_id, data = "message", None, None
        except Exception as exc:  # shown by the test
            if not self.stop.is_set():
                self.errors.append(repr(exc))

    def jobs(self, job_id: str) -> list[tuple[float, int, str]]:
        return [(t, i, d["status"]) for t, k, i, d in self.got
                if k == "job" and d["id"] == job_id]

    def logs(self, job_id: str) -> list[tuple[float, dict]]:
        return [(t, d) for t, k, _, d in self.got if k == "log" and d["job_id"] == job_id]

    def wait(self, what, timeout: float = 90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what():
                return True
            time.sleep(0.05)
        return False

    def close(self):
        self.stop.set()
        self.thread.join(5)


def subscribers(r: redis.Redis, prefix: str) -> int:
    return r.pubsub_numsub(f"{prefix}:events")[0][1]


def kill_subscriptions(r: redis.Redis, prefix: str) -> int:
    """CLIENT KILL the pub/sub connections of these services only (other suites share
    the stack's Redis): the buses name theirs."""
    ids = [c["id"] for c in r.client_list(_type="pubsub")
           if c.get("name") == f"hpcbridge-events:{prefix}"]
    for client_id in ids:
        r.client_kill_filter(_id=client_id)
    return len(ids)


def submit(api: str, **params) -> tuple[float, str]:
    r = httpx.post(f"{api}/jobs", headers=ALICE, timeout=30,
                   json={"app": "hello", "params": params, "hpc": "slurm"})
    assert r.status_code == 201, r.text
    return time.monotonic(), r.json()["id"]


@pytest.fixture
def two_middlewares(tmp_path, stack, pg_url):
    """A and B: one database, one Redis prefix, one data folder; a maintainer beside B."""
    a = Services(str(tmp_path / "a"), stack, auth="static", static_tokens=TOKENS,
                 db_url=pg_url)
    a.hpcs = [slurm_hpc(stack, a.run_id, poll_interval=1.0)]
    slow_fallback = "c.EventBus.fallback_interval = 60.0\n"  # only a push is this fast
    a.extra_config = slow_fallback
    b = Services(str(tmp_path / "b"), stack, auth="static", static_tokens=TOKENS,
                 db_url=pg_url, run_id=a.run_id, hpcs=a.hpcs,
                 extra_config=slow_fallback + f"c.Site.data_dir = {a.data_dir!r}\n")
    try:
        a.start(maintainer=False)
        b.start(maintainer=True)
        yield a, b
    finally:
        b.stop()
        a.stop()
        for svc in (a, b):
            assert "Traceback" not in svc.log("server"), svc.log("server")


def test_a_stream_on_one_middleware_sees_what_the_other_and_the_maintainer_write(
        two_middlewares, stack):
    a, b = two_middlewares
    r = redis.Redis.from_url(stack["redis_url"])
    prefix = f"hpcbridge-test-{a.run_id}"
    on_a, on_b = Reader(a.api), Reader(b.api)  # each process's bus starts with a stream
    readers = [on_a, on_b]
    try:
        assert on_a.connected.wait(15) and on_b.connected.wait(15)
        assert on_a.wait(lambda: subscribers(r, prefix) == 2, 10), "both buses subscribe"
        sent, job = submit(b.api, lines=4, delay=1.5, name="pushed")
        assert on_a.wait(lambda: any(s == "succeeded" for _, _, s in on_a.jobs(job))), \
            (on_a.got, on_a.errors, b.log("maintainer"))
        seen = on_a.jobs(job)
        ids = [i for _, i, _ in seen]
        statuses = [s for _, _, s in seen]
        assert ids == sorted(set(ids)), "in id order, once each"
        assert statuses[0] == "queued" and statuses[-1] == "succeeded"
        assert "running" in statuses
        first = seen[0][0] - sent
        assert first < 2.0, f"queued reached A {first:.2f} s after the POST to B"
        # the stream on B saw the same ids (one sequence for every process)
        assert on_b.wait(lambda: [i for _, i, _ in on_b.jobs(job)] == ids, 10)

        # log lines as they are stored, before the job's end reaches the stream
        logs = on_a.logs(job)
        out = [d for _, d in logs if d["stream"] == "stdout"]
        assert out, on_a.got
        assert out[0]["offset"] == 0 and out[0]["text"].startswith("[1/4] Hello, pushed!")
        sizes = [len(d["text"].encode()) for d in out]
        assert [d["size"] for d in out] == sizes  # the piece's bytes, as stored
        assert [d["offset"] for d in out] == [sum(sizes[:k]) for k in range(len(out))]
        assert "".join(d["text"] for d in out).count("Hello, pushed!") == 4
        ended = [t for t, _, s in seen if s == "succeeded"][0]
        assert logs[0][0] < ended - 2, "the first line came while the job was running"
        assert set(logs[0][1]) == {"job_id", "stream", "offset", "size", "text"}

        # resumable: from the second event on, exactly the rest of this job's events
        resumed = Reader(a.api, {"Last-Event-ID": str(ids[1])})
        readers.append(resumed)
        assert resumed.wait(lambda: [i for _, i, _ in resumed.jobs(job)] == ids[2:], 15), \
            (resumed.got, ids)

        # pub/sub lost: both processes subscribe again, pushes go on
        assert kill_subscriptions(r, prefix) == 2
        assert on_a.wait(lambda: subscribers(r, prefix) == 2, 15), a.log("server")
        assert "subscribed again" in a.log("server")
        sent, job2 = submit(b.api, lines=1, delay=0, name="again")
        assert on_a.wait(lambda: any(s == "succeeded" for _, _, s in on_a.jobs(job2))), \
            (on_a.got, on_a.errors)
        assert on_a.jobs(job2)[0][0] - sent < 2.0
        assert not any(x.errors for x in readers), [x.errors for x in readers]
    finally:
        for x in readers:
            x.close()


def test_without_notices_the_fallback_read_delivers_and_the_bus_subscribes_again(
        tmp_path, stack):
    svc = Services(str(tmp_path), stack, auth="static", static_tokens=TOKENS,
                   extra_config="c.EventBus.fallback_interval = 2.0\n")
    svc.start(maintainer=False)
    r = redis.Redis.from_url(stack["redis_url"])
    prefix = f"hpcbridge-test-{svc.run_id}"
    store = Store(svc.db_url, create=False)  # no publisher in this process: no notices
    reader = None
    try:
        reader = Reader(svc.api)
        assert reader.connected.wait(15)
        assert reader.wait(lambda: subscribers(r, prefix) == 1, 10)
        job = store.create_job(user="alice", app="hello", hpc="local").id
        t0 = time.monotonic()
        assert reader.wait(lambda: reader.jobs(job), 10)
        late = reader.jobs(job)[0][0] - t0
        assert late > 0.2, f"{late:.2f} s: not the fallback read? (no notice was sent)"
        assert late < 4.0, f"{late:.2f} s: the fallback read is every 2 s"

        assert kill_subscriptions(r, prefix) == 1
        store.add_event(job, "note", "while the subscription was gone")
        assert reader.wait(lambda: len(reader.jobs(job)) == 2, 10), reader.got
        assert reader.wait(lambda: subscribers(r, prefix) == 1, 15), svc.log("server")
        assert not reader.errors, reader.errors
    finally:
        if reader is not None:
            reader.close()
        store.close()
        svc.stop()
        shutil.rmtree(tmp_path / "data" / "work", ignore_errors=True)
        assert "Traceback" not in svc.log("server"), svc.log("server")
