"""The store's session records (server/storesessions.py) on a real SQLite file: guarded
status changes with one event each, stop requests written once under concurrency, time
charged forward only and exactly once into the session quota, activity moving forward."""
from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest

from hpcbridge.clock import aware, utcnow
from hpcbridge.server.store import Store


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(f"sqlite:///{tmp_path}/hpcbridge.db")


def new_session(store, user="alice"):
    return store.create_session(user=user, app="webecho", hpc="slurm", params={},
                                resources={"time": 10}, time_limit_seconds=600,
                                base_url="/x/", secret="s")


def test_lifecycle_is_guarded_and_every_change_has_its_event(store):
    record = new_session(store)
    assert record.status == "starting" and record.last_activity_at is not None
    assert not store.session_transition(record.id, "running", "no", expect=["running"])
    assert store.session_transition(record.id, "running", "running on n:1", node="n", port=1)
    assert not store.session_transition(record.id, "running", "twice")
    got = store.get_session(record.id)
    assert (got.status, got.node, got.port) == ("running", "n", 1) and got.running_at
    assert store.session_transition(record.id, "stopped", "idle", event_type="idle")
    assert not store.session_transition(record.id, "stopped", "again")
    assert [e.type for e in store.session_events(record.id)] == ["starting", "running", "idle"]
    assert store.get_session(record.id).stopped_at is not None
    assert store.get_session(record.id, user="bob") is None
    assert store.count_active_sessions("alice") == 0


def test_a_stop_request_is_written_once_under_concurrency(store):
    record = new_session(store)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: store.request_session_stop(record.id, "stop"), range(16)))
    got = store.get_session(record.id)
    assert got.status == "stopping" and got.stop_requested
    assert [e.type for e in store.session_events(record.id)] == ["starting", "stopping"]
    assert store.active_sessions("slurm")[0].id == record.id


def test_time_is_charged_forward_once_and_at_the_stop(store):
    record = new_session(store)
    start = utcnow() - dt.timedelta(seconds=100)
    assert store.start_charging(record.id, start)
    assert not store.start_charging(record.id, utcnow())  # counted from the first start
    assert store.charge_session(record.id, start + dt.timedelta(seconds=40)) == 40
    assert store.charge_session(record.id, start + dt.timedelta(seconds=30)) == 0  # not back
    # concurrent charges of the same period: one wins, nothing is counted twice
    until = start + dt.timedelta(seconds=70)
    with ThreadPoolExecutor(8) as pool:
        charged = list(pool.map(lambda _: store.charge_session(record.id, until), range(8)))
    assert sorted(charged)[-1] == 30 and sum(charged) == 30
    assert store.session_transition(record.id, "stopped", "stopped")
    got = store.get_session(record.id)
    assert 99 <= got.charged_seconds <= 102
    assert aware(got.charged_until) == aware(got.stopped_at)
    limit, used = store.session_quota("alice", 3600)
    assert limit == 3600 and used == pytest.approx(got.charged_seconds)


def test_session_quota_default_and_own_limit(store):
    assert store.session_quota("bob", None) == (None, 0.0)
    store.set_session_quota("bob", 60)
    assert store.session_quota("bob", 3600) == (60, 0.0)
    store.set_session_quota("bob", None)  # back to the site's default
    assert store.session_quota("bob", 3600) == (3600, 0.0)
    assert store.quota("bob").used_seconds == 0  # the job quota is untouched


def test_activity_moves_forward_only(store):
    record = new_session(store)
    later = utcnow() + dt.timedelta(seconds=10)
    store.touch_session(record.id, later)
    store.touch_session(record.id, later - dt.timedelta(seconds=5))
    assert aware(store.get_session(record.id).last_activity_at) == later
