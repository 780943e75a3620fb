"""The store on a real PostgreSQL (the stack's private instance on 127.0.0.1:5433).

SQLite serialises every writer; PostgreSQL does not. These tests run the migrations from an
empty database and back, and race workers on the rules that SQLite made easy: one
transition wins, one claim of a job, every quota charge counted.
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from racing import race

from hpcbridge.lifecycle import JobStatus
from hpcbridge.server.migrations import alembic_config
from hpcbridge.server.store import Store

pytestmark = pytest.mark.stack


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_upgrade_from_empty_and_round_trip(pg_url):
    assert tables(pg_url) == set()
    store = Store(pg_url)  # upgrade to head at start, as every service does
    made = tables(pg_url)
    assert {"job", "event", "alembic_version"} <= made
    with store.engine.begin() as connection:
        config = alembic_config(store.engine)
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert tables(pg_url) <= {"alembic_version"}
    store.migrate()
    assert tables(pg_url) == made
    job = store.create_job(user="alice", app="hello", hpc="cluster1", params={"n": 1})
    assert store.get_job(job.id).status == JobStatus.QUEUED
    store.engine.dispose()



def test_one_transition_wins_among_racing_workers(pg_url):
    store = Store(pg_url)
    jobs = [store.create_job(user="alice", app="hello", hpc="cluster1") for _ in range(20)]
    for job in jobs:
        won = race(8, lambda i, job=job: store.transition(
            job.id, JobStatus.STAGING, f"claimed by worker {i}", expect=[JobStatus.QUEUED]))
        assert won.count(True) == 1, won
        staged = [e for e in store.events(job.id) if e.type == JobStatus.STAGING]
        assert len(staged) == 1
    store.engine.dispose()


def test_concurrent_quota_charges_are_all_counted(pg_url):
    store = Store(pg_url)
    jobs = [store.create_job(user="bob", app="hello", hpc="cluster1") for _ in range(16)]
    # every job charged by two workers at once (a retried task): counted once each
    charged = race(32, lambda i: store.charge(jobs[i % 16].id, 10.0, default_limit=1000.0))
    assert charged.count(True) == 16
    assert store.quota("bob").used_seconds == pytest.approx(160.0)
    store.engine.dispose()


def test_a_log_offset_past_any_log_reads_nothing(pg_url):
    """An offset beyond 32 bits (the offset column's type on PostgreSQL) is an empty read,
    not a database error (found by schemathesis as a 500)."""
    store = Store(pg_url)
    job = store.create_job(user="alice", app="hello", hpc="cluster1")
    store.append_log(job.id, "stdout", 0, b"hello")
    assert store.read_log(job.id, "stdout", 6_043_192_453) == (b"", 6_043_192_453)
    assert store.read_log(job.id, "stdout", 1, limit=3) == (b"ell", 4)
    store.engine.dispose()
