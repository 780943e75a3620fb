"""The event bus's fan-out (server/eventbus.py) on a real SQLite store: one query per
refresh whatever the number of streams, each stream its user's rows, a backlog read page
by page that joins the fan-out without gap or duplicate, a gap waited for, log notices
to the right streams; and the notices the store's writers send to its event hooks."""
from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import event as sa_event

from hpcbridge.server import eventbus
from hpcbridge.server.eventbus import Bus, EventBus, Fanout, Publisher, quick_client
from hpcbridge.server.eventcursor import EventCursor
from hpcbridge.server.models import Event
from hpcbridge.server.store import Store


def message(row):
    return f"{row[0]}:{row[1]}"


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(Store, "event_hooks", [])
    s = Store(f"sqlite:///{tmp_path}/bus.db")
    yield s
    s.close()


@pytest.fixture
def notices(monkeypatch):
    got: list[dict] = []
    monkeypatch.setattr(Store, "event_hooks", [got.append])
    return got


def count_queries(store: Store) -> list:
    seen: list = []
    sa_event.listen(store.engine, "before_cursor_execute",
                    lambda *a: seen.append(a[2]) if a[2].lstrip().upper().startswith(
                        "SELECT") else None)
    return seen


def ids(sub):
    out = []
    while sub.queue:
        out.append(int(sub.queue.popleft().split(":")[0]))
    return out


def test_one_query_per_refresh_serves_every_stream_its_users_rows(store):
    alice = store.create_job(user="alice", app="hello", hpc="local").id
    bob = store.create_job(user="bob", app="hello", hpc="local").id
    fan = Fanout(store, message, grace=5)
    streams = [fan.open("alice", EventCursor(store.last_event_id())) for _ in range(50)]
    admin = fan.open(None, EventCursor(store.last_event_id()))
    bobs = fan.open("bob", EventCursor(store.last_event_id()))
    for sub in [*streams, admin, bobs]:
        assert fan.catch_up(sub)
    store.add_event(alice, "note", "a1")
    store.add_event(bob, "note", "b1")
    store.add_event(alice, "note", "a2")
    selects = count_queries(store)
    assert fan.refresh() is False
    assert len(selects) == 1, selects  # not one per stream
    newest = store.last_event_id()
    assert all(ids(s) == [newest - 2, newest] for s in streams)
    assert ids(admin) == [newest - 2, newest - 1, newest]
    assert ids(bobs) == [newest - 1]
    assert {s.cursor.after for s in [*streams, admin, bobs]} == {newest}  # keepalive id


def test_a_resumed_stream_reads_its_backlog_then_joins_without_gap_or_duplicate(
        store, monkeypatch):
    monkeypatch.setattr(eventbus, "PAGE", 7)
    job = store.create_job(user="alice", app="hello", hpc="local").id
    start = store.last_event_id()
    for i in range(30):
        store.add_event(job, "note", f"n{i}")
    fan = Fanout(store, message, grace=5)
    live = fan.open("alice", EventCursor(store.last_event_id()))
    assert fan.catch_up(live)
    late = fan.open("alice", EventCursor(start))  # Last-Event-ID: 30 events behind
    got, pages = [], 0
    while not fan.catch_up(late):
        pages += 1
        got += ids(late)
        store.add_event(job, "note", "meanwhile")  # the others move on meanwhile
        while fan.refresh():
            pass
    got += ids(late)
    store.add_event(job, "note", "after the join")
    fan.refresh()
    got += ids(late)
    assert pages >= 4
    assert got == list(range(start + 1, store.last_event_id() + 1))
    assert ids(live) == list(range(start + 31, store.last_event_id() + 1))


def test_the_process_cursor_waits_at_a_gap_and_sends_the_late_commit_in_order(store):
    job = store.create_job(user="alice", app="hello", hpc="local").id
    base = store.last_event_id()
    fan = Fanout(store, message, grace=30)
    sub = fan.open("alice", EventCursor(base))
    assert fan.catch_up(sub)
    with store.session() as s:  # id base+2 commits before base+1 (PostgreSQL can)
        s.add(Event(id=base + 2, job_id=job, type="note", message="second"))
        s.commit()
    fan.refresh()
    assert ids(sub) == [] and sub.cursor.after == base
    with store.session() as s:
        s.add(Event(id=base + 1, job_id=job, type="note", message="first"))
        s.commit()
    fan.refresh()
    assert ids(sub) == [base + 1, base + 2]


def test_a_slow_stream_leaves_the_fanout_and_reads_the_rest_itself(store, monkeypatch):
    monkeypatch.setattr(eventbus, "MAX_QUEUED", 5)
    job = store.create_job(user="alice", app="hello", hpc="local").id
    start = store.last_event_id()
    fan = Fanout(store, message, grace=5)
    sub = fan.open("alice", EventCursor(start))
    assert fan.catch_up(sub)
    store.add_events([(job, "note", str(i)) for i in range(10)])
    fan.refresh()
    assert not sub.joined and len(sub.queue) == 10
    got = ids(sub)
    store.add_events([(job, "note", str(i)) for i in range(3)])
    fan.refresh()  # without it
    while not fan.catch_up(sub):
        got += ids(sub)
    got += ids(sub)
    assert sub.joined
    fan.refresh()
    got += ids(sub)
    assert got == list(range(start + 1, store.last_event_id() + 1))


def test_log_notices_reach_the_streams_of_their_user_and_admins(store):
    fan = Fanout(store, message, grace=5)
    alice, bob, admin = (fan.open(u, EventCursor(0)) for u in ("alice", "bob", None))
    fan.log_notice({"kind": "log", "job_id": "j" * 32, "user": "alice", "stream": "stdout",
                    "offset": 12, "size": 3, "text": "hi\n"})
    assert not bob.queue
    for sub in (alice, admin):
        text = sub.queue.popleft()
        assert text.startswith("event: log\ndata: ") and text.endswith("\n\n")
        assert "\nid:" not in text
        assert json.loads(text.split("data: ", 1)[1]) == {
            "job_id": "j" * 32, "stream": "stdout", "offset": 12, "size": 3, "text": "hi\n"}


def test_the_writers_notify_event_ids_users_and_log_text(store, notices):
    job = store.create_job(user="alice", app="hello", hpc="local")
    other = store.create_job(user="bob", app="hello", hpc="local")
    store.add_event(job.id, "note", "x")
    store.add_events([(job.id, "note", "y"), (other.id, "note", "z")])
    moved = store.transition_many("staging", {job.id: ("m", {}), other.id: ("m", {})})
    store.request_cancel(job.id)
    assert store.append_log(job.id, "stdout", 0, "héllo\n".encode())
    assert store.append_log(job.id, "stdout", 7, b"x" * (eventbus_limit() + 1))
    assert not store.append_log(job.id, "stdout", 0, b"again")  # not the end: no notice
    events = [e for n in notices if n["kind"] == "events" for e in n["events"]]
    stored = {e.id: (e.job_id, u) for j, u in ((job.id, "alice"), (other.id, "bob"))
              for e in store.events(j)}
    assert {e[0]: (e[1], e[2]) for e in events} == stored
    assert len(events) == len(stored) == 2 + 1 + 2 + 2 + 1
    assert sorted(moved) == sorted([job.id, other.id])
    logs = [n for n in notices if n["kind"] == "log"]
    assert logs == [
        {"kind": "log", "job_id": job.id, "user": "alice", "stream": "stdout", "offset": 0,
         "size": 7, "text": "héllo\n"},
        {"kind": "log", "job_id": job.id, "user": "alice", "stream": "stdout", "offset": 7,
         "size": eventbus_limit() + 1, "text": None}]


def eventbus_limit():
    from hpcbridge.server.storefiles import LOG_NOTICE_MAX_BYTES
    return LOG_NOTICE_MAX_BYTES


def test_a_failing_hook_or_a_dead_redis_never_fails_a_write(store, monkeypatch):
    import redis
    dead = quick_client(redis.Redis(host="127.0.0.1", port=1), 0.5)  # nothing listens
    publisher = Publisher(dead, "x:events", retry_after=60)

    def broken(_notice):
        raise RuntimeError("observer bug")
    monkeypatch.setattr(Store, "event_hooks", [broken, publisher])
    job = store.create_job(user="alice", app="hello", hpc="local").id
    for _ in range(5):
        store.add_event(job, "note", "still written")
    assert len(store.events(job)) == 6
    assert publisher.published == 0 and publisher.dropped == 6
    assert publisher._quiet_until > 0  # one attempt, then quiet: no timeout per write


def test_a_notice_of_ids_already_read_costs_no_query(store):
    class Settings(EventBus):
        pass
    fan = Fanout(store, message, grace=5)
    bus = Bus(fan, Settings(), "x:events", connect=None, stopping=asyncio.Event())
    job = store.create_job(user="alice", app="hello", hpc="local").id
    sub = fan.open("alice", EventCursor(store.last_event_id()))
    fan.catch_up(sub)
    bus.on_message(json.dumps({"kind": "events", "events": [[1, job, "alice"]]}))
    assert not bus._wake.is_set()
    bus.on_message(json.dumps({"kind": "events",
                               "events": [[store.last_event_id() + 1, job, "alice"]]}))
    assert bus._wake.is_set()
    bus.on_message(b"not json")  # logged, ignored
