"""A sweep's end in the store (server/storenotify.py): Sweep.ended_at and the sweep's outbox
rows are written once, in the transaction that makes its last element final, whichever way
the elements end (one at a time, a batch, racing threads); never before, never per element
— on a real SQLite file, as the workers use it (PostgreSQL:
tests/integration/store/test_sweep_notify_postgres.py)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from hpcbridge.server.store import Store

NOTIFY = {"webhook": "https://hooks.example.org/sweep", "email": "alice@example.org"}


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(f"sqlite:///{tmp_path}/hpcbridge.db")


def new_sweep(store, size=3, notify=NOTIFY):
    sweep = store.create_sweep("alice", app="hello", hpc="local", resources={}, upload=None,
                               throttle=None, points=[{"name": f"p{i}"} for i in range(size)],
                               notify=notify)
    return sweep, store.sweep_elements(sweep.id)


def test_the_last_element_to_end_ends_the_sweep_and_writes_its_rows_once(store):
    sweep, jobs = new_sweep(store)
    assert store.transition(jobs[0].id, "failed", "bad")
    assert store.transition(jobs[1].id, "cancelled", "cancelled")
    assert store.get_sweep(sweep.id).ended_at is None
    assert store.notifications(sweep_id=sweep.id) == []  # nothing while one is active
    for step in ["staging", "submitted", "running", "finishing"]:
        assert store.transition(jobs[2].id, step, step)
        assert store.notifications(sweep_id=sweep.id) == []
    assert store.transition(jobs[2].id, "succeeded", "done")
    ended = store.get_sweep(sweep.id)
    assert ended.ended_at is not None and ended.cleaned_at is None
    rows = store.notifications(sweep_id=sweep.id)
    assert sorted((r.channel, r.target, r.job_id) for r in rows) == [
        ("email", NOTIFY["email"], jobs[2].id), ("webhook", NOTIFY["webhook"], jobs[2].id)]
    assert all(r.status == "pending" for r in rows)
    # the elements never notify on their own
    assert [store.notifications(j.id) for j in jobs[:2]] == [[], []]
    # a final transition tried again changes nothing
    assert not store.transition(jobs[2].id, "failed", "again")
    assert len(store.notifications(sweep_id=sweep.id)) == 2
    assert store.get_sweep(sweep.id).ended_at == ended.ended_at


def test_a_batch_ending_every_element_writes_one_set_of_rows(store):
    sweep, jobs = new_sweep(store, size=5)
    other, other_jobs = new_sweep(store, size=2, notify={"webhook": NOTIFY["webhook"]})
    # elements of two sweeps in one batch, in no particular order
    moves = {j.id: ("the HPC refused it", {}) for j in [*jobs, other_jobs[0]]}
    assert len(store.transition_many("failed", moves)) == 6
    assert len(store.notifications(sweep_id=sweep.id)) == 2
    assert store.get_sweep(other.id).ended_at is None  # one of its elements is still queued
    assert store.notifications(sweep_id=other.id) == []
    assert store.transition(other_jobs[1].id, "cancelled", "cancelled")
    assert [r.channel for r in store.notifications(sweep_id=other.id)] == ["webhook"]


def test_a_sweep_without_notify_ends_without_rows_and_jobs_still_notify(store):
    sweep, jobs = new_sweep(store, size=2, notify=None)
    job = store.create_job(user="alice", app="hello", hpc="local", params={}, resources={},
                           notify={"webhook": NOTIFY["webhook"]})
    store.transition_many("failed", {j.id: ("x", {}) for j in [*jobs, job]})
    assert store.get_sweep(sweep.id).ended_at is not None
    assert store.notifications(sweep_id=sweep.id) == []
    [row] = store.notifications(job.id)
    assert row.sweep_id is None and row.channel == "webhook"


def test_elements_ending_at_once_from_many_threads_end_the_sweep_once(store):
    for _ in range(3):
        sweep, jobs = new_sweep(store, size=12)
        with ThreadPoolExecutor(12) as pool:
            assert all(pool.map(lambda j: store.transition(j.id, "failed", "x"), jobs))
        assert store.get_sweep(sweep.id).ended_at is not None
        assert len(store.notifications(sweep_id=sweep.id)) == 2


def test_claimed_rows_name_their_sweep_and_the_cleanup_is_recorded_once(store):
    sweep, jobs = new_sweep(store, size=1)
    assert store.sweeps_to_clean("local") == []  # no folder on the HPC
    store.update_sweep(sweep.id, remote_dir="/work/alice/" + sweep.id)
    assert store.sweeps_to_clean("local") == []  # not ended
    assert not store.sweep_cleaned(sweep.id)
    store.transition(jobs[0].id, "failed", "x")
    claimed = store.claim_notifications(10, 60)
    assert sorted((n.sweep_id, j.id) for n, j in claimed) == [(sweep.id, jobs[0].id)] * 2
    assert store.sweeps_to_clean("local") == [(sweep.id, jobs[0].id)]
    assert store.sweeps_to_clean("other") == []
    assert store.sweep_cleaned(sweep.id) and not store.sweep_cleaned(sweep.id)
    assert store.sweeps_to_clean("local") == []
