"""The event stream's cursor (server/eventcursor.py): it sends event ids in order, waits
at a gap for a write still being committed, gives a gap up only after its grace, and a
new stream sends a write that was in flight when it opened — and the store's queries it
runs on, with the idempotency key's unique index, on a real SQLite file."""
from __future__ import annotations

import datetime as dt
import threading

import pytest

from hpcbridge.server.eventcursor import EventCursor, start_cursor
from hpcbridge.server.store import Store


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rows(*ids):
    return [(i, "job", "alice") for i in ids]


def ids(taken):
    return [r[0] for r in taken]


def test_ids_in_order_go_through_and_move_the_cursor():
    cursor = EventCursor(4, grace=5, clock=Clock())
    assert ids(cursor.take(rows(5, 6, 7))) == [5, 6, 7]
    assert cursor.after == 7
    assert cursor.take([]) == [] and cursor.after == 7


def test_a_gap_holds_the_cursor_until_the_missing_id_commits():
    clock = Clock()
    cursor = EventCursor(4, grace=5, clock=clock)
    # 6 and 7 are visible, 5 is not yet (committed later, on PostgreSQL)
    assert ids(cursor.take(rows(6, 7))) == []
    assert cursor.after == 4
    clock.now = 4.9
    assert ids(cursor.take(rows(6, 7))) == []
    assert ids(cursor.take(rows(5, 6, 7))) == [5, 6, 7]  # nothing skipped, nothing twice


def test_a_gap_older_than_its_grace_is_given_up_and_the_next_one_waits_again():
    clock = Clock()
    cursor = EventCursor(4, grace=5, clock=clock)
    assert ids(cursor.take(rows(6, 7, 9))) == []
    clock.now = 5.0
    assert ids(cursor.take(rows(6, 7, 9))) == [6, 7]  # 5 was rolled back: gone for good
    assert cursor.after == 7
    clock.now = 9.0
    assert ids(cursor.take(rows(9))) == []  # 8 is a new gap: its own grace
    clock.now = 10.0
    assert ids(cursor.take(rows(9))) == [9]


def test_quiet_ids_move_the_cursor_without_being_sent():
    cursor = EventCursor(4, grace=5, quiet={6, 7}, clock=Clock())
    assert ids(cursor.take(rows(5, 6, 7, 8))) == [5, 8]
    assert cursor.after == 8


def test_a_new_stream_starts_after_the_newest_event_when_nothing_is_in_flight():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    recent = [(i, now) for i in range(1, 11)]
    cursor = start_cursor(10, recent, grace=5, now=now)
    assert cursor.after == 10


def test_a_new_stream_sends_a_write_in_flight_below_the_newest_id():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    recent = [(i, now) for i in (1, 2, 3, 5, 6)]  # 4 is being committed
    cursor = start_cursor(6, recent, grace=5, now=now, clock=Clock())
    assert cursor.after == 3
    assert ids(cursor.take(rows(5, 6))) == []  # waits for 4
    assert ids(cursor.take(rows(4, 5, 6))) == [4]  # 5 and 6 were there before: not sent
    assert cursor.after == 6


def test_old_gaps_do_not_hold_a_new_stream():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    old = now - dt.timedelta(minutes=5)
    recent = [(1, old), (3, old), (4, now)]  # 2 was rolled back minutes ago
    assert start_cursor(4, recent, grace=5, now=now).after == 4


# --- the store's side ----------------------------------------------------------------
@pytest.fixture
def store(tmp_path) -> Store:
    return Store(f"sqlite:///{tmp_path}/hpcbridge.db")


def test_events_after_sees_every_users_events_in_id_order(store):
    a = store.create_job(user="alice", app="hello", hpc="local")
    b = store.create_job(user="bob", app="hello", hpc="local")
    store.add_event(a.id, "note", "one")
    got = store.events_after(0, 10)
    assert [(r[1], r[2]) for r in got] == [(a.id, "alice"), (b.id, "bob"), (a.id, "alice")]
    assert [r[0] for r in got] == sorted(r[0] for r in got)
    assert store.last_event_id() == got[-1][0]
    assert [r[0] for r in store.events_after(got[0][0], 1)] == [got[1][0]]
    assert store.events_after(0, 10, upto=got[1][0])[-1][0] == got[1][0]


def test_one_idempotency_key_makes_one_job_under_concurrent_creators(store):
    n = 12
    barrier = threading.Barrier(n)
    results = []

    def create(_):
        barrier.wait(10)
        results.append(store.create_job_once("alice", "key-1", "fp", app="hello",
                                             hpc="local"))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == n
    assert len({job.id for job, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert store.list_jobs(user="alice")[1] == 1
    # the key is the user's: bob's same key is another job
    job, created = store.create_job_once("bob", "key-1", "fp", app="hello", hpc="local")
    assert created and job.id != results[0][0].id


def test_a_gap_behind_an_old_event_is_given_up_at_once():
    """A client that reconnects more often than the grace still gets past a gap for good:
    the event written after the gap tells how old it is."""
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=6)
    young = dt.datetime.now(dt.timezone.utc)
    cursor = EventCursor(4, grace=5, clock=Clock())
    assert ids(cursor.take([(6, "job", "alice", young)])) == []
    assert ids(cursor.take([(6, "job", "alice", old), (7, "job", "alice", young)])) == [6, 7]
