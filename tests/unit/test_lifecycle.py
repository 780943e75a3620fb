"""The job lifecycle: the transition table (hpcbridge/lifecycle.py), the maintainer's pure
decisions (maintainer/lifecycle.py) and the store's guard that enforces the table."""
import os
import subprocess
import threading

import pytest

from hpcbridge.connectors.spec import render_batch_script
from hpcbridge.connectors.state import (
    CANCELLED,
    FAILED,
    RUNNING,
    SUBMITTED,
    SUCCEEDED,
    UNKNOWN,
    JobState,
    parse_sacct,
    parse_squeue,
)
from hpcbridge.lifecycle import (
    ACTIVE,
    FINAL,
    IN_SCHEDULER,
    TIMESTAMPS,
    TRANSITIONS,
    can_move,
    sources_of,
)
from hpcbridge.maintainer import lifecycle as L
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


# --- what a scheduler answer means --------------------------------------------------------
def st(status, raw="", **kw):
    return JobState("42", status, raw, **kw)


@pytest.mark.parametrize("current", ["submitted", "running"])
def test_unknown_and_pending_change_nothing(current):
    # "not known yet" (sacct lag, a job missing from both) is never taken as an outcome
    assert L.on_scheduler_state(current, st(UNKNOWN), "slurm").status is None
    assert L.on_scheduler_state(current, st(SUBMITTED, "PENDING"), "slurm").status is None


def test_running_is_entered_once():
    d = L.on_scheduler_state("submitted", st(RUNNING, "RUNNING"), "slurm")
    assert d.status == "running" and "RUNNING" in d.message
    assert L.on_scheduler_state("running", st(RUNNING, "RUNNING"), "slurm").status is None


@pytest.mark.parametrize("status,outcome", [
    (SUCCEEDED, "succeeded"), (FAILED, "failed"), (CANCELLED, "cancelled")])
@pytest.mark.parametrize("current", ["submitted", "running"])
def test_every_end_goes_through_finishing(current, status, outcome):
    d = L.on_scheduler_state(current, st(status, "X", exit_code=7, elapsed_seconds=3, cpus=2),
                             "slurm")
    assert d.status == "finishing"
    assert d.fields == {"outcome": outcome, "exit_code": 7, "scheduler_state": "X",
                        "elapsed_seconds": 3, "cpus": 2}


def decide_sacct(line):
    state = parse_sacct(line)["42"]
    decision = L.on_scheduler_state("running", state, "slurm")
    if decision.status is None:
        return None, None
    f = decision.fields
    return f["outcome"], L.final_message(f["outcome"], f["exit_code"], f["scheduler_state"],
                                         state.reason)


@pytest.mark.parametrize("line,outcome,message", [
    ("42|hpcbridge-x|COMPLETED|0:0|00:00:01|1", "succeeded", "succeeded"),
    ("42|hpcbridge-x|FAILED|3:0|00:00:01|1", "failed", "failed with exit code 3"),
    ("42|hpcbridge-x|TIMEOUT|0:0|00:01:03|1", "failed", "failed: TIMEOUT"),
    ("42|hpcbridge-x|OUT_OF_MEMORY|137:0|00:00:02|1", "failed",
     "failed: OUT_OF_MEMORY (exit code 137)"),
    ("42|hpcbridge-x|NODE_FAIL|0:0|00:00:02|1", "failed", "failed: NODE_FAIL"),
    ("42|hpcbridge-x|CANCELLED by 1001|0:0|00:00:02|1", "cancelled", "cancelled"),
    ("42|hpcbridge-x|FAILED|0:9|00:00:02|1", "failed", "failed with exit code 137"),
])
def test_sacct_answers_become_final_messages(line, outcome, message):
    assert decide_sacct(line) == (outcome, message)


@pytest.mark.parametrize("line", [
    "42|allocation|PENDING|0:0|00:00:00|1",  # sacct lags the controller by seconds
    "42|hpcbridge-x|RUNNING|0:0|00:00:01|1",
])
def test_sacct_lag_is_not_an_outcome(line):
    assert decide_sacct(line) == (None, None)


def test_a_timeout_seen_in_squeue_still_says_timeout():
    state = parse_squeue("42|TIMEOUT|TimeLimit|1:01|1")["42"]
    d = L.on_scheduler_state("running", state, "slurm")
    assert d.status == "finishing"
    assert "TIMEOUT" in L.final_message("failed", d.fields["exit_code"],
                                        d.fields["scheduler_state"], state.reason)


def test_final_message_without_details():
    assert L.final_message("failed", None, None) == "failed: unknown reason"
    assert L.final_message("failed", None, None, "exit code 1") == "failed: exit code 1"
    assert L.final_message("cancelled", 0, "CANCELLED by 0") == "cancelled"


# --- remote paths, environment, spec ---------------------------------------------------------
@pytest.mark.parametrize("user", ["alice", "a@b.org", "x y", "..", "../../etc", "", "é", "a/b"])
def test_user_dirs_are_one_safe_component(user):
    d = L.safe_user_dir(user)
    assert d and "/" not in d and not d.startswith(".")
    assert all(c.isalnum() and c.isascii() or c in "_.+-" for c in d)


def test_user_dirs_do_not_collide():
    names = ["a@b", "a+40b", "a b", "a_b", "a.b", "A@b", ".a", "a", "+2ea", "..", "."]
    assert len({L.safe_user_dir(n) for n in names}) == len(names)


def test_remote_workdir():
    assert L.remote_workdir("/home/h/root/", "a@b", "abc") == "/home/h/root/a+40b/abc"


def test_job_environment_is_strings_with_booleans_as_json():
    env = L.job_environment("id1", "/w/id1", {"n": 3, "x": 0.5, "flag": True, "s": "hi"},
                            has_data=False)
    assert env["param_n"] == "3" and env["param_x"] == "0.5" and env["param_flag"] == "true"
    assert env["HPCBRIDGE_DATA_DIR"] == "" and env["HPCBRIDGE_RESULT_DIR"] == "/w/id1/result"
    assert all(isinstance(v, str) for v in env.values())


class _Job:
    id = "0123456789abcdef0123456789abcdef"
    user, app, hpc = "alice", "hello", "slurm"

    def __init__(self, params, resources):
        self.params, self.resources = params, resources


class _HPC:
    default_partition = "debug"


def test_build_spec_defaults_and_resources():
    spec = L.build_spec(_Job({}, {}), "echo hi", "/w/j", _HPC(), False)
    assert spec.name == "hpcbridge-" + _Job.id
    assert (spec.time_minutes, spec.cpus, spec.partition) == (10, 1, "debug")
    assert spec.command.startswith("mkdir -p result\n")
    spec = L.build_spec(_Job({}, {"time": 1, "cpus": 4, "memory": 256, "partition": "p2"}),
                        "x", "/w/j", _HPC(), True)
    assert (spec.time_minutes, spec.cpus, spec.memory_mb, spec.partition) == (1, 4, 256, "p2")
    assert spec.environment["HPCBRIDGE_DATA_DIR"] == "/w/j/data"


def test_hostile_parameters_stay_data(tmp_path):
    """Parameters reach the job as environment values, never as shell text."""
    hostile = "$(touch pwned); `touch pwned2`; ' \" \\ \n; echo done"
    workdir = str(tmp_path / "w")
    os.makedirs(workdir)
    spec = L.build_spec(_Job({"s": hostile}, {}), 'printf %s "$param_s" > result/out',
                        workdir, _HPC(), False)
    script = tmp_path / "job.sh"
    script.write_text(render_batch_script(spec))
    subprocess.run(["bash", str(script)], check=True, cwd=workdir, timeout=30)
    assert (tmp_path / "w" / "result" / "out").read_text() == hostile
    assert not any(p.name.startswith("pwned") for p in tmp_path.rglob("*"))


def test_job_json_carries_the_request():
    import json
    data = json.loads(L.job_json(_Job({"n": 1}, {"time": 2})))
    assert data == {"id": _Job.id, "user": "alice", "app": "hello", "hpc": "slurm",
                    "params": {"n": 1}, "resources": {"time": 2}}


# --- admission order -------------------------------------------------------------------------
class _Q:
    def __init__(self, id_, user):
        self.id, self.user = id_, user

    def __repr__(self):
        return self.id


def queue_of(spec: str) -> list:
    """'a a b' → queued jobs a1 a2 b1 (oldest first)."""
    seen: dict = {}
    jobs = []
    for user in spec.split():
        seen[user] = seen.get(user, 0) + 1
        jobs.append(_Q(f"{user}{seen[user]}", user))
    return jobs


def picked(queued, running, n):
    return [j.id for j in L.fair_pick(queued, queue_of(running), n)]


def test_fair_pick_round_robin_from_empty():
    assert picked(queue_of("a a a a a b b"), "", 5) == ["a1", "b1", "a2", "b2", "a3"]


def test_fair_pick_gives_a_freed_slot_to_the_user_with_fewest_running():
    # alice queued 15 first and holds all 4 slots; bob queued 5 after her: when one slot
    # frees, it is bob's — slots freeing one at a time must not all go to alice
    queued = queue_of("a " * 11 + "b " * 5)
    assert picked(queued, "a a a", 1) == ["b1"]
    assert picked(queued, "a a b", 1) == ["b1"]
    assert picked(queued, "a a b b", 1) == ["a1"]  # equal load: who waited longest
    assert picked(queued, "a a b", 3) == ["b1", "a1", "b2"]


def test_fair_pick_keeps_each_users_order_and_bounds():
    queued = queue_of("a b a c b a")
    assert picked(queued, "", 0) == [] and picked([], "a", 3) == []
    out = picked(queued, "", 10)
    assert sorted(out) == sorted(j.id for j in queued)
    for user in "abc":
        mine = [j for j in out if j.startswith(user)]
        assert mine == sorted(mine)
