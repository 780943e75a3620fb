"""The event stream of a real middleware process cannot skip: 2,000 events written by
concurrent writers while a client reads the stream — cut twice and resumed, once with the
Last-Event-ID header and once with ?last_event_id= — arrive every one exactly once, in id
order. On SQLite and on the stack's PostgreSQL, where writers commit ids out of order (each
PostgreSQL writer holds its transaction open a moment after the insert) and a few inserts
are rolled back (gaps for good). The writers publish their notices on Redis as the store's
do (the pushed path, server/eventbus.py), all but every tenth (lost notices: the fallback
read and the next notice cover them)."""
from __future__ import annotations

import random
import threading
import time

import httpx
import pytest
import redis
from services import Services

from hpcbridge.server.eventbus import Publisher, channel_of, quick_client
from hpcbridge.server.models import Event
from hpcbridge.server.store import Store

pytestmark = [pytest.mark.stack, pytest.mark.slow]

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}
WRITERS, PER_WRITER = 8, 250  # 2,000 events
ROLLBACKS = 3  # PostgreSQL: inserts rolled back, ids that never appear
CUTS = (600, 1200)  # the client drops the stream after this many messages


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/events.db"
    return request.getfixturevalue("pg_url")


class Reader:
    """Reads alice's stream in a thread: (event id, job id) of every message, in order;
    drops the connection at CUTS and resumes from the last id read."""

    def __init__(self, api: str):
        self.api, self.got, self.resumes, self.errors = api, [], [], []
        self.connected, self.stop = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        cuts = list(CUTS)
        while not self.stop.is_set():
            last = self.got[-1][0] if self.got else None
            headers, params = {"Authorization": "token tok-alice"}, {}
            if last is not None:  # first resume by header, the second by query
                if len(self.resumes) % 2 == 0:
                    headers["Last-Event-ID"] = str(last)
                else:
                    params["last_event_id"] = last
                self.resumes.append(last)
            try:
                self.read(headers, params, cuts)
            except httpx.ReadTimeout:
                pass
            except Exception as exc:  # shown by the test, not lost with the thread
                self.errors.append(repr(exc))
                time.sleep(0.5)
            if cuts and len(self.got) >= cuts[0]:
                cuts.pop(0)
                time.sleep(1.5)  # meanwhile the writers go on: more than a page piles up

    def read(self, headers, params, cuts):
        event_id = None
        with httpx.stream("GET", f"{self.api}/events/stream", headers=headers, params=params,
                          timeout=httpx.Timeout(10, read=2)) as r:
            assert r.status_code == 200, r.read()
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    self.connected.set()
                elif line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("data: "):
                    job_id = line.split('"id":"', 1)[1][:32]
                    self.got.append((event_id, job_id))
                    if cuts and len(self.got) >= cuts[0] or self.stop.is_set():
                        return


def write_events(store: Store, jobs: list[str], n: int, slow: bool, seed: int,
                 written: list, rolled_back: list, publish=None):
    """n events on random jobs; `slow`: hold each transaction open a moment after the
    insert, so that later ids commit first. `publish`: the notice after each commit."""
    rnd = random.Random(seed)
    for i in range(n):
        job_id = rnd.choice(jobs)
        with store.session() as s:
            event = Event(job_id=job_id, type="note", message=f"{seed}-{i}")
            s.add(event)
            s.flush()
            if slow:
                time.sleep(rnd.uniform(0, 0.01))
            if seed < ROLLBACKS and slow and i == n // 2:
                s.rollback()
                rolled_back.append(event.id)
                continue
            s.commit()
        written.append((event.id, job_id))
        if publish is not None and i % 10:
            publish({"kind": "events", "events": [[event.id, job_id, None]]})


def test_the_stream_sees_every_event_exactly_once(tmp_path, stack, db_url):
    postgres = db_url.startswith("postgresql")
    store = Store(db_url)
    alice = [store.create_job(user="alice", app="hello", hpc="local").id for _ in range(4)]
    bob = [store.create_job(user="bob", app="hello", hpc="local").id for _ in range(2)]
    svc = Services(str(tmp_path), stack, auth="static", static_tokens=TOKENS, extra_config=(
        f"c.Site.db_url = {db_url!r}\nc.HPCBridgeServer.sse_interval = 0.05\n"
        "c.HPCBridgeServer.sse_grace = 2.0"))
    svc.start(maintainer=False)
    publish = Publisher(quick_client(redis.Redis.from_url(stack["redis_url"]), 0.5),
                        channel_of(f"hpcbridge-test-{svc.run_id}"))
    reader = None
    try:
        reader = Reader(svc.api)
        assert reader.connected.wait(15), svc.log("server")
        written: list = []
        rolled_back: list = []
        writers = [threading.Thread(target=write_events, args=(
            store, alice + bob, PER_WRITER, postgres, seed, written, rolled_back, publish))
            for seed in range(WRITERS)]
        t0 = time.monotonic()
        for w in writers:
            w.start()
        for w in writers:
            w.join(120)
        wrote = time.monotonic() - t0
        expected = sorted(e for e, job in written if job in alice)
        assert len(written) + len(rolled_back) == WRITERS * PER_WRITER
        deadline = time.monotonic() + 60
        while len(reader.got) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # anything sent twice would come now
        reader.stop.set()
        got = [e for e, _ in reader.got]
        assert not reader.errors, (reader.errors, svc.log("server"))
        assert len(got) == len(set(got)), "an event was sent twice"
        assert got == sorted(got), "events out of id order"
        assert got == expected, (f"missing {sorted(set(expected) - set(got))[:20]}, "
                                 f"extra {sorted(set(got) - set(expected))[:20]}")
        assert dict(reader.got) == {e: j for e, j in written if j in alice}
        assert len(reader.resumes) >= 2
        assert publish.published > 0 and publish.dropped == 0
        print(f"\n{db_url.split(':')[0]}: {len(written)} events in {wrote:.1f} s, "
              f"{len(got)} of alice's streamed, resumed at {reader.resumes}, "
              f"rolled back {rolled_back}")
    finally:
        if reader is not None:
            reader.stop.set()
            reader.thread.join(10)
        svc.stop()
        store.close()
        assert "Traceback" not in svc.log("server"), svc.log("server")
