"""The store (server/store.py), the one writer of the database: lifecycle-guarded
transitions under concurrency, idempotent log appends, cancel requests,
quota charging and job listing — on a real SQLite file, as the middleware uses it."""
from __future__ import annotations

import datetime as dt
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from hpcbridge.lifecycle import FINAL, TIMESTAMPS, TRANSITIONS
from hpcbridge.server.store import Store

STATUSES = list(TRANSITIONS)


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(f"sqlite:///{tmp_path}/hpcbridge.db")


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory) -> Store:
    """One database for the many small cases that each use their own job."""
    return Store(f"sqlite:///{tmp_path_factory.mktemp('store')}/hpcbridge.db")


def new_job(store, user="alice", hpc="local", app="hello"):
    return store.create_job(user=user, app=app, hpc=hpc, params={"n": 1}, resources={})


def put_in(store, job_id, status):
    """Walk a job along the lifecycle to `status` (through the store's own transitions)."""
    path = {"queued": [], "staging": ["staging"], "submitted": ["staging", "submitted"],
            "running": ["staging", "submitted", "running"],
            "finishing": ["staging", "submitted", "running", "finishing"],
            "succeeded": ["staging", "submitted", "running", "finishing", "succeeded"],
            "failed": ["failed"], "cancelled": ["cancelled"]}[status]
    for step in path:
        assert store.transition(job_id, step, f"to {step}")
    assert store.get_job(job_id).status == status


# --- creation --------------------------------------------------------------------------
def test_create_job_writes_the_row_and_a_queued_event(store):
    job = new_job(store)
    got = store.get_job(job.id)
    assert got.status == "queued" and got.user == "alice" and got.params == {"n": 1}
    assert got.created_at.tzinfo is not None and got.queued_at == got.created_at
    assert [(e.type, e.message) for e in store.events(job.id)] == [("queued", "queued for local")]


def test_get_job_of_someone_else_is_none(store):
    job = new_job(store, user="bob")
    assert store.get_job(job.id, user="alice") is None
    assert store.get_job(job.id, user="bob").id == job.id
    assert store.get_job(job.id).id == job.id
    assert store.get_job("0" * 32) is None


# --- transitions, guarded by the lifecycle table ---------------------------------------
@pytest.mark.parametrize("current", STATUSES)
@pytest.mark.parametrize("target", STATUSES)
def test_transition_follows_the_lifecycle_table_exactly(shared_store, current, target):
    store = shared_store
    job = new_job(store)
    put_in(store, job.id, current)
    events_before = len(store.events(job.id))
    allowed = target in TRANSITIONS[current]
    assert store.transition(job.id, target, "why") is allowed
    after = store.get_job(job.id)
    events = store.events(job.id)
    if allowed:
        assert after.status == target and after.message == "why"
        assert len(events) == events_before + 1 and events[-1].type == target
        if target in TIMESTAMPS:
            assert getattr(after, TIMESTAMPS[target]) == after.updated_at
    else:  # nothing written at all
        assert after.status == current
        assert len(events) == events_before


def test_final_statuses_are_final(store):
    for final in FINAL:
        job = new_job(store)
        put_in(store, job.id, final)
        assert not any(store.transition(job.id, s, "x") for s in STATUSES)


def test_transition_with_expect_narrows_the_sources(store):
    job = new_job(store)
    put_in(store, job.id, "running")
    assert not store.transition(job.id, "failed", "x", expect={"queued", "staging"})
    assert store.transition(job.id, "failed", "x", expect={"running"}, exit_code=3)
    job = store.get_job(job.id)
    assert job.status == "failed" and job.exit_code == 3 and job.finished_at is not None


def test_transition_extra_fields_and_event_type(store):
    job = new_job(store)
    assert store.transition(job.id, "staging", "copying", event_type="stage_in",
                            worker="w1", remote_dir="/x")
    job = store.get_job(job.id)
    assert (job.worker, job.remote_dir) == ("w1", "/x")
    assert store.events(job.id)[-1].type == "stage_in"


def test_transition_of_unknown_job_is_false(store):
    assert store.transition("0" * 32, "staging", "x") is False


def _race(store_url, job_id, targets, rounds=1):
    """Every target from its own thread and Store (like separate workers), released at once."""
    stores = [Store(store_url, create=False) for _ in targets]
    barrier = threading.Barrier(len(targets))

    def go(i):
        barrier.wait()
        return stores[i].transition(job_id, targets[i], f"by {i}")

    with ThreadPoolExecutor(len(targets)) as pool:
        return list(pool.map(go, range(len(targets))))


@pytest.mark.parametrize("targets", [
    ["staging", "staging"],                      # two workers claim the same queued job
    ["failed", "cancelled"],                     # two ends race
    ["staging"] * 8,                             # many workers
])
def test_concurrent_transitions_only_one_wins(store, targets):
    for _ in range(5):  # repeat: a race that passes once may still be a race
        job = new_job(store)
        results = _race(store.url, job.id, targets)
        assert results.count(True) == 1, results
        winner = targets[results.index(True)]
        assert store.get_job(job.id).status == winner
        events = [e.type for e in store.events(job.id)]
        assert events == ["queued", winner], events


@pytest.mark.parametrize("targets", [
    ["staging", "cancelled"],                    # a claim races a cancel
    ["staging", "failed", "cancelled", "submitted"],
])
def test_concurrent_transitions_serialise_to_a_legal_path(store, targets):
    """When one move may follow another, both may win, but only in a legal order: the
    events form a path of the lifecycle and there is one event per winning move."""
    for _ in range(5):
        job = new_job(store)
        results = _race(store.url, job.id, targets)
        events = [e.type for e in store.events(job.id)]
        assert len(events) - 1 == results.count(True), (results, events)
        assert sorted(events[1:]) == sorted(t for t, ok in zip(targets, results) if ok)
        for a, b in zip(events, events[1:]):
            assert b in TRANSITIONS[a], events
        assert store.get_job(job.id).status == events[-1]


def test_concurrent_finish_of_a_running_job_records_one_outcome(store):
    job = new_job(store)
    put_in(store, job.id, "finishing")
    results = _race(store.url, job.id, ["succeeded", "failed", "cancelled"])
    assert results.count(True) == 1
    job = store.get_job(job.id)
    assert job.status in FINAL
    assert [e.type for e in store.events(job.id)].count(job.status) == 1


# --- cancel requests -------------------------------------------------------------------
def test_request_cancel_is_recorded_once(store):
    job = new_job(store)
    got = store.request_cancel(job.id)
    assert got.cancel_requested and got.status == "queued"
    store.request_cancel(job.id)
    assert [e.type for e in store.events(job.id)].count("cancel_requested") == 1


def test_concurrent_cancel_requests_write_one_event(store):
    for _ in range(5):
        job = new_job(store)
        stores = [Store(store.url, create=False) for _ in range(6)]
        barrier = threading.Barrier(6)

        def go(s, barrier=barrier, job_id=job.id):
            barrier.wait()
            return s.request_cancel(job_id)

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(go, stores))
        assert all(a.cancel_requested for a in answers)
        assert [e.type for e in store.events(job.id)].count("cancel_requested") == 1


def test_request_cancel_of_a_finished_job_changes_nothing(store):
    job = new_job(store)
    put_in(store, job.id, "succeeded")
    got = store.request_cancel(job.id)
    assert got.status == "succeeded" and not got.cancel_requested
    assert "cancel_requested" not in [e.type for e in store.events(job.id)]
    assert store.request_cancel("0" * 32) is None


# --- logs ------------------------------------------------------------------------------
def test_append_log_is_idempotent_under_retries(store):
    job = new_job(store)
    assert store.append_log(job.id, "stdout", 0, b"hello ")
    assert not store.append_log(job.id, "stdout", 0, b"hello ")   # the same retry
    assert not store.append_log(job.id, "stdout", 0, b"other")    # a stale writer
    assert not store.append_log(job.id, "stdout", 99, b"gap")     # not at the end
    assert store.append_log(job.id, "stdout", 6, b"world\n")
    assert not store.append_log(job.id, "stdout", 6, b"world\n")
    assert not store.append_log(job.id, "stdout", 12, b"")        # nothing to add
    assert store.read_log(job.id, "stdout") == (b"hello world\n", 12)
    assert store.get_job(job.id).stdout_size == 12


def test_streams_are_independent(store):
    job = new_job(store)
    assert store.append_log(job.id, "stderr", 0, b"err")
    assert store.append_log(job.id, "stdout", 0, b"out")
    assert store.read_log(job.id, "stderr") == (b"err", 3)
    assert store.read_log(job.id, "stdout") == (b"out", 3)
    job = store.get_job(job.id)
    assert (job.stdout_size, job.stderr_size) == (3, 3)


def test_concurrent_appends_at_one_offset_keep_one(store):
    job = new_job(store)
    stores = [Store(store.url, create=False) for _ in range(6)]
    barrier = threading.Barrier(6)

    def go(i):
        barrier.wait()
        return stores[i].append_log(job.id, "stdout", 0, f"writer {i}\n".encode())

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(go, range(6)))
    assert results.count(True) == 1
    data, end = store.read_log(job.id, "stdout")
    assert data == f"writer {results.index(True)}\n".encode() and end == len(data)


def test_read_log_from_offsets_and_with_limits(store):
    job = new_job(store)
    pieces = [b"abc", b"defg", b"h", b"ijklmn"]
    offset = 0
    for p in pieces:
        assert store.append_log(job.id, "stdout", offset, p)
        offset += len(p)
    whole = b"".join(pieces)
    for start in range(len(whole) + 2):
        for limit in (1, 2, 5, 100):
            data, nxt = store.read_log(job.id, "stdout", start, limit)
            assert data == whole[start:start + limit], (start, limit)
            assert nxt == start + len(data)
    # reading chunk by chunk with next_offset gets everything exactly once
    got, pos = b"", 0
    while True:
        data, pos = store.read_log(job.id, "stdout", pos, 3)
        if not data:
            break
        got += data
    assert got == whole


# --- listing, counting -----------------------------------------------------------------
def test_list_jobs_filters_and_pages(store):
    made = []
    for i in range(7):
        job = new_job(store, user="alice" if i % 2 == 0 else "bob",
                      app="hello" if i < 5 else "primes", hpc="local" if i < 6 else "slurm")
        made.append(job.id)
        time.sleep(0.002)
    put_in(store, made[0], "running")
    put_in(store, made[2], "failed")
    jobs, total = store.list_jobs(user="alice")
    assert total == 4 and [j.id for j in jobs] == [made[6], made[4], made[2], made[0]]
    jobs, total = store.list_jobs(user="alice", limit=2, offset=1)
    assert total == 4 and [j.id for j in jobs] == [made[4], made[2]]
    assert store.list_jobs(user="alice", offset=10) == ([], 4)
    assert [j.id for j in store.list_jobs(status=["running", "failed"])[0]] == [made[2], made[0]]
    assert store.list_jobs(app="primes")[1] == 2
    assert store.list_jobs(hpc="slurm", user="alice")[1] == 1
    assert store.list_jobs(user="nobody") == ([], 0)
    assert store.count_jobs("local") == 1  # only `running` holds a place in the scheduler
    since = dt.datetime.now(dt.timezone.utc)
    time.sleep(0.002)
    store.add_event(made[1], "note", "poked")  # touches the job
    assert [j.id for j in store.list_jobs(since=since)[0]] == [made[1]]


# --- quota -----------------------------------------------------------------------------
def test_quota_defaults_set_and_charge_once(store):
    assert store.quota("alice").limit_seconds is None
    assert store.quota("alice", 100).limit_seconds == 100
    assert store.set_quota("alice", 0).limit_seconds == 0
    job = new_job(store)
    assert store.charge(job.id, 12.5)
    assert not store.charge(job.id, 12.5)  # a retried finish does not charge twice
    quota = store.quota("alice")
    assert (quota.limit_seconds, quota.used_seconds) == (0, 12.5)
    assert store.set_quota("alice", None).used_seconds == 12.5


def test_hpc_state_drain(store):
    assert store.hpc_state("local").draining is False
    store.set_hpc_state("local", draining=True, message="maintenance")
    state = store.hpc_state("local")
    assert state.draining and state.message == "maintenance"
    store.set_hpc_state("local", draining=False)
    assert store.hpc_state("local").draining is False
