"""The job lifecycle: the transition table (hpcbridge/lifecycle.py) and the store's guard
that enforces it. What a scheduler's answer means for a job: tests/unit/maintainer/."""
import threading

import pytest

from hpcbridge.lifecycle import (
    ACTIVE,
    FINAL,
    IN_SCHEDULER,
    TIMESTAMPS,
    TRANSITIONS,
    can_move,
    sources_of,
)
from hpcbridge.server.models import Job
from hpcbridge.server.store import Store

HAPPY = ["queued", "staging", "submitted", "running", "finishing", "succeeded"]
ALL = set(TRANSITIONS)


# --- the table ----------------------------------------------------------------------------
def test_statuses_are_the_designed_ones():
    assert ALL == {"queued", "staging", "submitted", "running", "finishing",
                   "succeeded", "failed", "cancelled"}
    assert FINAL == {"succeeded", "failed", "cancelled"}
    assert ACTIVE == ALL - FINAL
    assert IN_SCHEDULER == {"staging", "submitted", "running"}
    assert IN_SCHEDULER < ACTIVE


def test_happy_path_is_allowed_step_by_step():
    for a, b in zip(HAPPY, HAPPY[1:]):
        assert can_move(a, b), (a, b)


@pytest.mark.parametrize("final", sorted(FINAL))
def test_final_states_have_no_way_out(final):
    assert TRANSITIONS[final] == frozenset()
    assert not any(can_move(final, s) for s in ALL)


@pytest.mark.parametrize("a,b", [
    ("queued", "running"), ("queued", "submitted"), ("queued", "finishing"),
    ("queued", "succeeded"), ("staging", "running"), ("staging", "succeeded"),
    ("submitted", "staging"), ("submitted", "queued"), ("submitted", "succeeded"),
    ("running", "submitted"), ("running", "queued"), ("running", "succeeded"),
    ("finishing", "running"), ("succeeded", "failed"), ("cancelled", "queued"),
])
def test_illegal_moves_are_refused(a, b):
    assert not can_move(a, b)


def test_success_only_through_finishing():
    # results and logs are always collected before a job is called succeeded
    assert sources_of("succeeded") == {"finishing"}


def test_every_active_state_can_be_cancelled_or_failed():
    # cancel is honoured in every state; nothing active is a dead end
    for status in ACTIVE:
        assert can_move(status, "cancelled"), status
        assert can_move(status, "failed"), status


def test_unreachable_hpc_sends_staging_back_to_queued():
    assert can_move("staging", "queued")


def test_every_status_is_reachable_from_queued():
    seen, todo = {"queued"}, ["queued"]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == ALL


def test_sources_of_agrees_with_can_move():
    for b in ALL:
        assert sources_of(b) == {a for a in ALL if can_move(a, b)}
    assert not can_move("nonsense", "queued") and not can_move("queued", "nonsense")


def test_timestamps_name_job_columns():
    for status, column in TIMESTAMPS.items():
        assert status in ALL
        assert column in Job.model_fields, column
    for final in FINAL:
        assert TIMESTAMPS[final] == "finished_at"


# --- the store enforces the table -----------------------------------------------------------
@pytest.fixture
def store(tmp_path):
    return Store(f"sqlite:///{tmp_path / 'db.sqlite'}")


def new_job(store):
    return store.create_job(user="alice", app="hello", hpc="slurm", params={}, resources={})


def test_store_refuses_what_the_table_refuses(store):
    job = new_job(store)
    assert not store.transition(job.id, "running", "skip ahead")
    assert not store.transition(job.id, "succeeded", "skip ahead")
    assert store.get_job(job.id).status == "queued"
    for status in HAPPY[1:]:
        assert store.transition(job.id, status, f"now {status}"), status
    assert not store.transition(job.id, "failed", "too late")
    job = store.get_job(job.id)
    assert job.status == "succeeded" and job.finished_at is not None
    assert [e.type for e in store.events(job.id)] == HAPPY


def test_expect_narrows_the_sources(store):
    job = new_job(store)
    store.transition(job.id, "staging", "s")
    # staging → cancelled is legal, but not when the caller expected 'queued'
    assert not store.transition(job.id, "cancelled", "c", expect=["queued"])
    assert store.transition(job.id, "cancelled", "c", expect=["staging"])


def test_only_one_of_two_racing_workers_moves_a_job(store):
    job = new_job(store)
    store.transition(job.id, "staging", "s")
    results, barrier = [], threading.Barrier(8)

    def attempt(i):
        barrier.wait()
        results.append(store.transition(job.id, "submitted", f"by {i}", expect=["staging"],
                                        scheduler_id=str(i)))
    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    assert [e.type for e in store.events(job.id)].count("submitted") == 1
