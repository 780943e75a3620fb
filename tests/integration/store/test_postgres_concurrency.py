"""Concurrent workers on the stack's PostgreSQL, beyond test_postgres.py's single-job
transition race and per-job quota charges: the writes SQLite serialised and PostgreSQL runs
side by side (READ COMMITTED, row locks). Each test starts its threads together on a barrier,
each thread with the same Store (one connection pool, as a worker process has).
"""
from __future__ import annotations

import datetime as dt
import random
from collections import Counter

import pytest
from racing import race

from hpcbridge.clock import utcnow
from hpcbridge.lifecycle import JobStatus
from hpcbridge.server.store import Store

pytestmark = pytest.mark.stack



@pytest.fixture
def store(pg_url):
    store = Store(pg_url)
    yield store
    store.close()


def test_batched_claims_of_overlapping_jobs_in_any_order_move_each_job_once(store):
    """Workers each move an overlapping, differently ordered batch queued → staging (the
    batched staging path): no worker fails (a deadlock would), every job moves exactly once
    with one event."""
    jobs = [store.create_job(user="alice", app="hello", hpc="cluster1").id for _ in range(60)]

    def claim(i):
        batch = random.Random(i).sample(jobs, 40)
        return store.transition_many(JobStatus.STAGING, {j: (f"worker {i}", {"worker": f"w{i}"})
                                                         for j in batch},
                                     expect=[JobStatus.QUEUED])
    moved = Counter(j for won in race(6, claim) for j in won)
    assert all(count == 1 for count in moved.values()), moved.most_common(3)
    touched = {j for i in range(6) for j in random.Random(i).sample(jobs, 40)}
    assert set(moved) == touched
    for job_id in touched:
        job = store.get_job(job_id)
        assert job.status == JobStatus.STAGING
        staged = [e for e in store.events(job_id) if e.type == JobStatus.STAGING]
        assert [e.message for e in staged] == [job.message]


def test_a_final_transition_racing_a_cancel_request_leaves_one_consistent_job(store):
    """The poller ends a job while its owner cancels it: either order is fine, never both
    a final status and a pending cancel event after it, never two final events."""
    jobs = [store.create_job(user="alice", app="hello", hpc="cluster1") for _ in range(20)]
    for job in jobs:
        for step in (JobStatus.STAGING, JobStatus.SUBMITTED, JobStatus.FINISHING):
            assert store.transition(job.id, step, step.value)

    def act(i):
        job = jobs[i // 4]
        if i % 4 == 0:
            return store.transition(job.id, JobStatus.SUCCEEDED, "done")
        return store.request_cancel(job.id) is not None
    race(len(jobs) * 4, act)
    for job in jobs:
        events = store.events(job.id)
        finals = [e for e in events if e.type == JobStatus.SUCCEEDED]
        cancels = [e for e in events if e.type == "cancel_requested"]
        assert len(finals) == 1 and len(cancels) <= 1, [(e.type, e.message) for e in events]
        if cancels:  # recorded only while the job was still active: before the end
            assert cancels[0].id < finals[0].id


def test_cancelling_a_sweep_while_workers_move_its_elements_never_deadlocks(store):
    """cancel_sweep (one UPDATE over the sweep's elements) beside batched moves of the
    same elements in id order (admission's order for a sweep: one queued_at, then id)."""
    for _ in range(5):
        sweep = store.create_sweep("alice", "hello", "cluster1", {}, None, None,
                                   [{"n": k} for k in range(80)])
        ids = sorted(j.id for j in store.sweep_elements(sweep.id))

        def act(i, sweep=sweep, ids=ids):
            if i < 2:
                return store.cancel_sweep(sweep.id)
            batch = sorted(random.Random(i).sample(ids, 50))
            return store.transition_many(JobStatus.STAGING, {j: ("staging", {}) for j in batch},
                                         expect=[JobStatus.QUEUED])
        results = race(6, act)
        marked = Counter(j for ids_ in results[:2] for j in ids_)
        assert set(marked.values()) <= {1}
        for job in store.sweep_elements(sweep.id):
            cancels = [e for e in store.events(job.id) if e.type == "cancel_requested"]
            assert job.cancel_requested and len(cancels) == 1


def test_notification_claims_by_racing_workers_take_each_row_once(store):
    jobs = [store.create_job(user="alice", app="hello", hpc="cluster1",
                             notify={"webhook": "http://127.0.0.1:9/hook",
                                     "email": "alice@example.org"}) for _ in range(30)]
    for job in jobs:
        store.transition(job.id, JobStatus.FAILED, "failed", expect=[JobStatus.QUEUED])
    later = utcnow() + dt.timedelta(seconds=5)

    def claim_all(i):  # as the sender loop: claim until nothing is due (or 20 rounds)
        ids = []
        for _ in range(20):
            got = [note.id for note, _ in store.claim_notifications(
                limit=10, lease_seconds=600, now=later)]
            if not got and len(ids) > 0:
                break
            ids += got
        return ids
    claimed = race(8, claim_all)
    claimed.append([note.id for note, _ in store.claim_notifications(  # what is left
        limit=100, lease_seconds=600, now=later)])
    counts = Counter(n for ids in claimed for n in ids)
    assert len(counts) == 60 and set(counts.values()) == {1}, counts.most_common(3)


def test_session_time_is_charged_once_by_racing_chargers_and_a_stop(store):
    """The poller's periodic charge, the idle check and a stop all charge the same
    period at once: the user is charged the period once."""
    started = utcnow() - dt.timedelta(seconds=100)
    sessions = []
    for _ in range(10):
        record = store.create_session(user="carol", app="webecho", hpc="cluster1")
        assert store.session_transition(record.id, "running", "listening")
        assert store.start_charging(record.id, started)
        sessions.append(record.id)
    until = started + dt.timedelta(seconds=100)

    def charge(i):
        session_id = sessions[i // 6]
        if i % 6 == 5:
            return store.session_transition(session_id, "stopped", "stopped")
        return store.charge_session(session_id, until)
    race(60, charge)
    _, used = store.session_quota("carol", None)
    total = sum(store.get_session(s).charged_seconds for s in sessions)
    assert used == pytest.approx(total)
    # each session: its 100 s once; a stop that won the race first charges up to its own now
    for session_id in sessions:
        assert 100 <= store.get_session(session_id).charged_seconds < 160


def test_racing_retries_of_one_idempotent_submission_make_one_job_and_one_sweep(store):
    made = race(8, lambda i: store.create_job_once("alice", "key-1", "fp", app="hello",
                                                   hpc="cluster1"))
    assert len({job.id for job, _ in made}) == 1
    assert [created for _, created in made].count(True) == 1
    sweeps = race(8, lambda i: store.create_sweep_once(
        "alice", "key-2", "fp", app="hello", hpc="cluster1", resources={}, upload=None,
        throttle=None, points=[{"n": k} for k in range(20)]))
    assert len({sweep.id for sweep, _ in sweeps}) == 1
    assert [first for _, first in sweeps].count(None) == 1
    assert len(store.sweep_elements(sweeps[0][0].id)) == 20


def test_first_charges_of_many_new_users_from_racing_workers_all_count(store):
    """Each user's quota row is created by whichever charge comes first (an upsert):
    racing first charges of 12 new users, 3 jobs each, lose none."""
    jobs = [store.create_job(user=f"user{k % 12}", app="hello", hpc="cluster1")
            for k in range(36)]
    assert race(36, lambda i: store.charge(jobs[i].id, 7.5, default_limit=100.0)) == [True] * 36
    for k in range(12):
        quota = store.quota(f"user{k}")
        assert quota.used_seconds == pytest.approx(22.5)
        assert quota.limit_seconds == 100.0
