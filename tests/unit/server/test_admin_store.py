"""The store's operator queries (server/storeadmin.py) on a real SQLite store: when a job
entered its status (finishing has no column of its own), stuck jobs with their last event,
usage per user, and the requeue record."""
from __future__ import annotations

import datetime as dt

import pytest

from hpcbridge.clock import utcnow
from hpcbridge.server.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/db.sqlite")
    yield s
    s.close()


def new_job(store, user="alice", hpc="slurm", to=()):
    job = store.create_job(user=user, app="hello", hpc=hpc, params={})
    for status in to:
        assert store.transition(job.id, status, f"now {status}")
    return job


def test_stuck_jobs_by_time_in_their_status(store):
    queued = new_job(store)
    staging = new_job(store, to=["staging"])
    finishing = new_job(store, hpc="other", to=["staging", "submitted", "running", "finishing"])
    done = new_job(store, to=["staging", "failed"])
    store.add_event(finishing.id, "waiting", "collecting results waits for other")
    later = utcnow() + dt.timedelta(seconds=30)

    assert store.stuck_jobs(60, now=later) == []
    records = store.stuck_jobs(10, now=later)
    assert [r.job.id for r in records] == [queued.id, staging.id, finishing.id]  # oldest first
    assert done.id not in {r.job.id for r in records}
    by_id = {r.job.id: r for r in records}
    assert by_id[finishing.id].last_event.type == "waiting"  # the newest event, not the move
    # finishing's time is its transition's event, not the later "waiting" event's touch
    moved = [e for e in store.events(finishing.id) if e.type == "finishing"][0]
    assert by_id[finishing.id].status_since.replace(tzinfo=None) == \
        moved.time.replace(tzinfo=None)
    assert by_id[staging.id].last_event.type == "staging"
    assert [r.job.id for r in store.stuck_jobs(10, hpc="other", now=later)] == [finishing.id]
    assert len(store.stuck_jobs(10, limit=1, now=later)) == 1


def test_usage_per_user(store):
    ended = new_job(store, to=["staging", "submitted", "running", "finishing", "succeeded"])
    store.charge(ended.id, 120.0)
    new_job(store)
    new_job(store, user="bob", to=["staging", "cancelled"])
    store.set_quota("carol", 500.0)
    usage = {u.user: u for u in store.usage(default_limit=1000.0)}
    assert usage["alice"].jobs == {"succeeded": 1, "queued": 1}
    assert usage["alice"].charged_seconds == 120.0
    assert usage["alice"].quota.used_seconds == 120.0
    assert usage["bob"].jobs == {"cancelled": 1} and usage["bob"].quota.limit_seconds == 1000.0
    assert usage["carol"].jobs == {} and usage["carol"].quota.limit_seconds == 500.0


def test_requeue_record_only_for_staging_or_finishing(store):
    staging = new_job(store, to=["staging"])
    queued = new_job(store)
    assert store.mark_requeued(staging.id, "admin").status == "staging"
    assert store.events(staging.id)[-1].type == "requeued"
    assert "admin" in store.events(staging.id)[-1].message
    assert store.mark_requeued(queued.id, "admin") is None
    assert store.mark_requeued("0" * 32, "admin") is None
    assert store.get_job(staging.id).status == "staging"
