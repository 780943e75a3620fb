"""A sweep's end on PostgreSQL (server/storenotify.py): elements ending at the same moment
in different transactions end the sweep exactly once — never twice, never not at all —
and batches ending elements of the same sweeps in opposite orders do not deadlock. The
window between an element's UPDATE and the check of its sweep is widened on purpose (a
pause before the check), so that every racing transaction has moved its element before
any of them looks: without the lock on the sweep's row, READ COMMITTED lets each see the
others' elements still active, and no sweep ends."""
from __future__ import annotations

import time

import pytest
from racing import race

from hpcbridge.server.store import Store

pytestmark = pytest.mark.stack
NOTIFY = {"webhook": "https://hooks.example.org/sweep", "email": "alice@example.org"}


@pytest.fixture
def store(pg_url):
    s = Store(pg_url)
    ended = s.jobs_ended

    def slowly(session, job_ids):  # every transaction has moved its jobs before one looks
        time.sleep(0.3)
        return ended(session, job_ids)
    s.jobs_ended = slowly
    yield s
    s.close()


def new_sweep(store, size):
    sweep = store.create_sweep("alice", app="hello", hpc="slurm", resources={}, upload=None,
                               throttle=None, points=[{"i": i} for i in range(size)],
                               notify=NOTIFY)
    return sweep, store.sweep_elements(sweep.id)


def test_elements_ending_together_end_their_sweep_once(store):
    sweeps = [new_sweep(store, 4) for _ in range(5)]
    jobs = [job for _, elements in sweeps for job in elements]
    moved = race(len(jobs), lambda i: store.transition(jobs[i].id, "failed", "ended"))
    assert all(moved)
    for sweep, _ in sweeps:
        assert store.get_sweep(sweep.id).ended_at is not None, "no transaction ended it"
        rows = store.notifications(sweep_id=sweep.id)
        assert sorted(r.channel for r in rows) == ["email", "webhook"], rows


def test_batches_ending_elements_of_the_same_sweeps_in_opposite_orders_never_deadlock(store):
    (a, a_jobs), (b, b_jobs) = new_sweep(store, 2), new_sweep(store, 2)
    batches = [[a_jobs[0], b_jobs[0]], [b_jobs[1], a_jobs[1]]]  # each locks both sweeps
    moved = race(2, lambda i: store.transition_many(
        "cancelled", {j.id: ("cancelled", {}) for j in batches[i]}))
    assert sorted(len(m) for m in moved) == [2, 2]
    for sweep in (a, b):
        assert store.get_sweep(sweep.id).ended_at is not None
        assert len(store.notifications(sweep_id=sweep.id)) == 2


def test_the_migration_ends_the_sweeps_that_had_already_ended(pg_url):
    """0006 on a database with sweeps: one whose elements are all final gets its ended_at
    (it is not told now), one still running does not; an upload over 2 GiB fits after."""
    import sqlalchemy as sa

    from hpcbridge.server.migrations import upgrade

    engine = sa.create_engine(pg_url)
    try:
        upgrade(engine, "0005")
        with engine.begin() as c:
            for sweep, statuses in [("a" * 32, ["failed", "succeeded"]),
                                    ("b" * 32, ["succeeded", "running"])]:
                c.execute(sa.text(
                    "INSERT INTO sweep (id, \"user\", app, hpc, size, created_at, updated_at)"
                    " VALUES (:id, 'alice', 'hello', 'slurm', 2, now(), now())"), {"id": sweep})
                for i, status in enumerate(statuses):
                    c.execute(sa.text(
                        "INSERT INTO job (id, \"user\", app, hpc, status, cancel_requested, "
                        "stdout_size, stderr_size, sweep_id, sweep_index, created_at, "
                        "updated_at, finished_at) VALUES (:id, 'alice', 'hello', 'slurm', "
                        ":status, false, 0, 0, :sweep, :i, now(), now(), now())"),
                        {"id": sweep[:31] + str(i), "status": status, "sweep": sweep, "i": i})
        upgrade(engine)
        with engine.begin() as c:
            ended = dict(c.execute(sa.text("SELECT id, ended_at FROM sweep")).all())
            assert ended["a" * 32] is not None and ended["b" * 32] is None
            assert c.execute(sa.text("SELECT count(*) FROM notification")).scalar() == 0
            c.execute(sa.text("INSERT INTO upload (id, \"user\", name, path, size, created_at)"
                              " VALUES ('u', 'alice', 'big', 'big', :size, now())"),
                      {"size": 5 * 2**30})
    finally:
        engine.dispose()
