"""The notification outbox in the store (server/storenotify.py): rows written with a job's
final transition and only then, claimed by exactly one of many concurrent workers, and
settled only by the holder of the claim — on a real SQLite file, as the workers use it."""
from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from hpcbridge.clock import aware, utcnow
from hpcbridge.server.store import Store

NOTIFY = {"webhook": "https://hooks.example.org/x", "email": "alice@example.org"}


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(f"sqlite:///{tmp_path}/hpcbridge.db")


def new_job(store, notify=NOTIFY, user="alice"):
    return store.create_job(user=user, app="hello", hpc="local", params={}, resources={},
                            notify=notify)


def run_to_end(store, job_id, final="succeeded"):
    steps = ["staging", "submitted", "running", "finishing", final] if final == "succeeded" \
        else [final]
    for step in steps:
        assert store.transition(job_id, step, f"to {step}")


def test_rows_are_written_with_the_final_transition_once_per_channel(store):
    job = new_job(store)
    for step in ["staging", "submitted", "running", "finishing"]:
        store.transition(job.id, step, step)
        assert store.notifications(job.id) == []  # nothing before the end
    assert store.transition(job.id, "succeeded", "done")
    rows = store.notifications(job.id)
    assert sorted((n.channel, n.target, n.status, n.attempts) for n in rows) == [
        ("email", "alice@example.org", "pending", 0),
        ("webhook", "https://hooks.example.org/x", "pending", 0)]
    assert not store.transition(job.id, "failed", "again")  # refused: no second set
    assert len(store.notifications(job.id)) == 2


@pytest.mark.parametrize("notify", [None, {}, {"email": None, "webhook": None}])
def test_a_job_that_asked_for_nothing_gets_no_rows(store, notify):
    job = new_job(store, notify=notify)
    run_to_end(store, job.id, "cancelled")
    assert store.notifications(job.id) == []


def test_a_failed_transition_writes_no_rows(store):
    job = new_job(store, notify={"email": "a@example.org"})
    assert not store.transition(job.id, "succeeded", "not from queued")
    assert store.notifications(job.id) == []


def test_only_due_rows_are_claimed_and_the_claim_is_a_lease(store):
    job = new_job(store, notify={"email": "a@example.org"})
    run_to_end(store, job.id, "failed")
    [(note, claimed_job)] = store.claim_notifications(10, lease_seconds=60)
    assert note.attempts == 1 and claimed_job.id == job.id and claimed_job.status == "failed"
    assert aware(note.next_attempt_at) > utcnow() + dt.timedelta(seconds=50)
    assert store.claim_notifications(10, lease_seconds=60) == []  # held
    later = utcnow() + dt.timedelta(seconds=61)  # the holder died: the lease ends
    [(again, _)] = store.claim_notifications(10, lease_seconds=60, now=later)
    assert again.attempts == 2
    assert not store.notification_sent(note, "late")  # the first holder lost it
    assert store.notification_sent(again, "mail sent")
    assert store.notifications(job.id)[0].status == "sent"
    assert store.claim_notifications(10, 60, now=later + dt.timedelta(hours=1)) == []


def test_many_workers_claiming_at_once_each_row_is_claimed_once(store):
    jobs = [new_job(store) for _ in range(20)]
    for job in jobs:
        run_to_end(store, job.id, "cancelled")
    barrier = threading.Barrier(8)

    def worker(_):
        barrier.wait()
        got = []
        for _ in range(10):
            got += [note.id for note, _job in store.claim_notifications(3, 60)]
        return got

    with ThreadPoolExecutor(8) as pool:
        claims = [i for got in pool.map(worker, range(8)) for i in got]
    assert len(claims) == 40 and len(set(claims)) == 40


def test_retry_and_give_up_write_the_outcome_and_an_event(store):
    job = new_job(store, notify={"webhook": "https://hooks.example.org/x"})
    run_to_end(store, job.id)
    [(note, _)] = store.claim_notifications(1, 60)
    assert store.notification_retry(note, 30, "the webhook answered 503")
    row = store.notifications(job.id)[0]
    assert row.status == "pending" and row.last_error == "the webhook answered 503"
    assert store.claim_notifications(1, 60) == []  # not due for 30 s
    [(note, _)] = store.claim_notifications(1, 60, now=utcnow() + dt.timedelta(seconds=31))
    assert store.notification_failed(note, "webhook not sent after 2 attempt(s): 404", "404")
    row = store.notifications(job.id)[0]
    assert (row.status, row.attempts, row.last_error) == ("failed", 2, "404")
    assert store.events(job.id)[-1].type == "notification_failed"
    assert store.claim_notifications(1, 60, now=utcnow() + dt.timedelta(days=1)) == []
