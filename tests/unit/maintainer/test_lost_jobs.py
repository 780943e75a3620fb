"""A job whose record by id the scheduler no longer shows as its own (issue 19, slurmctld
killed hard: it forgets its newest jobs and hands their ids out again): what a lookup by
name means (decisions.on_lookup), how the poller acts on it (reconcile.resolve_unseen), and
the Slurm lookup that answers it (SlurmHandler.find_states_by_name).

Seen on the real stack: right after the restart a job B is given the id X of a forgotten
job A. B runs for a second and leaves the queue before accounting has B's row, so `sacct -j
X` still answers A's row (name A, never ended): B looked "reused", its lookup by name found
it under X, and it was failed as lost although it had run and completed."""
from __future__ import annotations

import threading
import time

import pytest
from fault_fakes import FaultyHandler, NamedState
from maintainer_helpers import add_app, events, new_job

from hpcbridge.connectors.config import HPCConfig
from hpcbridge.connectors.errors import SchedulerUnavailable
from hpcbridge.connectors.handlers import SlurmHandler
from hpcbridge.connectors.state import UNKNOWN, JobState
from hpcbridge.connectors.transport import CommandCounter, CommandResult
from hpcbridge.maintainer import decisions as D
from hpcbridge.maintainer.poller import Poller

NAME = "hpcbridge-abc"


def completed(sid: str, name: str = NAME) -> NamedState:
    return NamedState(sid, "succeeded", name, "COMPLETED", 0, None, 1, 1)


# --- the decision ------------------------------------------------------------------------
def test_found_by_name_under_its_own_id_and_ended_is_collected_not_lost():
    d = D.on_lookup("submitted", "7", completed("7"), "slurm", 0, 30)
    assert d.status == "finishing" and d.fields["outcome"] == "succeeded", d
    d = D.on_lookup("running", "7", completed("7"), "slurm", 999, 30)  # however long
    assert d.status == "finishing", d


def test_found_by_name_under_its_own_id_and_live_is_left_to_run():
    assert D.on_lookup("running", "7", NamedState("7", "running", NAME, "RUNNING"),
                       "slurm", 999, 30).status is None
    d = D.on_lookup("submitted", "7", NamedState("7", "running", NAME, "RUNNING"),
                    "slurm", 999, 30)
    assert d.status == "running"
    assert D.on_lookup("submitted", "7", NamedState("7", "submitted", NAME, "PENDING"),
                       "slurm", 999, 30).status is None


def test_only_an_unended_accounting_row_waits_then_is_lost():
    runaway = JobState("7", UNKNOWN, "RUNNING", name=NAME)  # the controller forgot it
    assert D.on_lookup("running", "7", runaway, "slurm", 59, 30).status is None
    d = D.on_lookup("running", "7", runaway, "slurm", 60, 30)
    assert d.status == "failed" and d.message.startswith("the scheduler lost this job")


def test_known_by_no_one_is_lost_at_once_and_says_so():
    d = D.on_lookup("running", "7", None, "slurm", 0, 30)
    assert d.status == "failed" and d.message.startswith("the scheduler lost this job")
    assert "7" in d.message


def test_found_under_another_id_is_followed_there():
    d = D.on_lookup("running", "7", NamedState("9", "running", NAME, "RUNNING"),
                    "slurm", 0, 30)
    assert d.status is None and d.fields == {"scheduler_id": "9"}
    assert "9" in d.message and "7" in d.message


# --- the poller acting on it -------------------------------------------------------------
class NamedLookups(FaultyHandler):
    """A FaultyHandler that also answers find_states_by_name (Slurm's lookup with states)."""

    async def find_states_by_name(self, name):
        return await self._call("find_states_by_name", name)


def submitted_job(store, sid="4242"):
    job = new_job(store)
    store.update_job(job.id, hpc="local", status="submitted", scheduler_id=sid)
    return store.get_job(job.id)


def test_a_job_whose_id_shows_a_stale_older_row_is_collected_when_its_name_says_it_ended(
        runtime, tmp_path):
    add_app(runtime.store, tmp_path)
    job = submitted_job(runtime.store)
    handler = NamedLookups(runtime.handlers["local"])
    runtime.handlers["local"] = handler
    # by id: the forgotten job's row (another name, never ended); by name: ours, completed
    handler.faults["status_many"] = lambda ids: {
        i: NamedState(i, UNKNOWN, "hpcbridge-forgotten", "RUNNING") for i in ids}
    handler.faults["find_states_by_name"] = lambda name: {"4242": completed("4242", name)}
    Poller(runtime, threading.Event()).cycle(runtime.hpcs["local"])
    got = runtime.store.get_job(job.id)
    assert got.status != "failed", got.message
    seen = events(runtime.store, job.id)
    assert "running" in seen and "finishing" in seen, seen
    assert handler.calls["find_states_by_name"] == 1


def test_a_job_only_accounting_remembers_is_failed_as_lost_after_twice_lost_after(
        make_runtime_lost):
    rt, tmp_path = make_runtime_lost
    add_app(rt.store, tmp_path)
    job = submitted_job(rt.store)
    handler = NamedLookups(rt.handlers["local"])
    rt.handlers["local"] = handler
    handler.faults["status_many"] = lambda ids: {
        i: NamedState(i, "running", "hpcbridge-someone-else", "RUNNING") for i in ids}
    handler.faults["find_states_by_name"] = lambda name: {
        "4242": JobState("4242", UNKNOWN, "RUNNING", name=name)}
    poller, hpc = Poller(rt, threading.Event()), rt.hpcs["local"]
    poller.cycle(hpc)
    assert rt.store.get_job(job.id).status == "submitted"  # not yet: it may be lag
    deadline = time.monotonic() + 5
    while rt.store.get_job(job.id).status == "submitted" and time.monotonic() < deadline:
        time.sleep(0.1)
        poller.cycle(hpc)
    got = rt.store.get_job(job.id)
    assert got.status == "failed" and got.message.startswith("the scheduler lost this job")


def test_a_failed_lookup_is_unknown_never_lost(runtime, tmp_path):
    add_app(runtime.store, tmp_path)
    job = submitted_job(runtime.store)
    handler = NamedLookups(runtime.handlers["local"])
    runtime.handlers["local"] = handler
    handler.faults["status_many"] = lambda ids: {
        i: NamedState(i, "running", "hpcbridge-someone-else", "RUNNING") for i in ids}
    handler.faults["find_states_by_name"] = SchedulerUnavailable("sacct: the answer is unknown")
    Poller(runtime, threading.Event()).cycle(runtime.hpcs["local"])
    assert runtime.store.get_job(job.id).status == "submitted"


@pytest.fixture
def make_runtime_lost(tmp_path):
    from test_fault_poller import make_runtime
    rt = make_runtime(tmp_path, lost_after_seconds=0.2)
    yield rt, tmp_path
    rt.close()


# --- the Slurm lookup ---------------------------------------------------------------------
class Scripted:
    """A transport answering squeue and sacct with fixed text (what Slurm printed)."""

    def __init__(self, squeue: str, sacct: str):
        self.answers = {"squeue": squeue, "sacct": sacct}
        self.commands = CommandCounter()
        self.argv: list[list[str]] = []

    async def run(self, argv, stdin=None, timeout=None):
        self.argv.append(list(argv))
        return CommandResult(tuple(argv), 0, self.answers[argv[0]], "")


async def test_slurm_lookup_by_name_gives_the_controllers_record_with_its_state():
    t = Scripted(f"60040|COMPLETED|None|0:01|1|{NAME}\n", "")
    states = await SlurmHandler(HPCConfig(id="c", user="u"), t).find_states_by_name(NAME)
    assert states["60040"].status == "succeeded" and states["60040"].name == NAME
    assert len(t.argv) == 1 and t.argv[0][:4] == ["squeue", "-h", "-t", "all"]


async def test_slurm_lookup_by_name_falls_back_to_accounting_where_unended_is_unknown():
    t = Scripted("", f"60036|{NAME}|RUNNING|0:0|00:00:03|1\n")
    states = await SlurmHandler(HPCConfig(id="c", user="u"), t).find_states_by_name(NAME)
    assert states["60036"].status == UNKNOWN and states["60036"].name == NAME
    assert t.argv[1][0] == "sacct" and f"--name={NAME}" in t.argv[1]


async def test_slurm_lookup_by_name_knows_nothing_only_when_both_answered_empty():
    handler = SlurmHandler(HPCConfig(id="c", user="u"), Scripted("", ""))
    assert await handler.find_states_by_name(NAME) == {}


# --- a record without a name ("allocation") ----------------------------------------------
# Seen on the real stack: a forgotten job's id went to an element of another user's array;
# right after that element ended, `sacct -j <id>` answered COMPLETED under the name
# "allocation" (its name not written yet), and the forgotten job was reported `succeeded`
# with no results of its own.
def nameless(sid: str, status: str = "succeeded", raw: str = "COMPLETED") -> JobState:
    return JobState(sid, status, raw, 0, None, 1, 1, name="")


def test_a_nameless_record_is_not_taken_as_the_jobs():
    assert D.record_verdict(nameless("7"), NAME) == D.NAMELESS
    assert D.record_verdict(JobState("7", "succeeded", "COMPLETED"), NAME) == D.OURS  # None


def test_a_nameless_ended_row_still_nameless_after_lost_after_is_the_jobs_own():
    # the controller died right after the job ended, before accounting had its name: the
    # job ran; another job's row under a reused id would carry its name by then
    assert D.on_lookup("running", "7", None, "slurm", 99, 30, nameless("7"), 5).status is None
    d = D.on_lookup("running", "7", None, "slurm", 30, 30, nameless("7"), 30)
    assert d.status == "finishing" and d.fields["outcome"] == "succeeded"
    # a nameless row that never ended: lost
    d = D.on_lookup("running", "7", None, "slurm", 30, 30,
                    JobState("7", UNKNOWN, "PENDING", name=""))
    assert d.status == "failed" and d.message.startswith("the scheduler lost this job")


def test_another_jobs_nameless_completed_row_under_a_reused_id_never_succeeds_a_job(
        make_runtime_lost):
    rt, tmp_path = make_runtime_lost
    add_app(rt.store, tmp_path)
    job = submitted_job(rt.store)
    handler = NamedLookups(rt.handlers["local"])
    rt.handlers["local"] = handler
    rows = {"now": nameless("4242")}
    handler.faults["status_many"] = lambda ids: {i: rows["now"] for i in ids}
    handler.faults["find_states_by_name"] = lambda name: {}  # our job: forgotten
    poller, hpc = Poller(rt, threading.Event()), rt.hpcs["local"]
    poller.cycle(hpc)
    assert rt.store.get_job(job.id).status == "submitted"
    # a second later accounting has the other job's name on that row: ours was lost
    rows["now"] = NamedState("4242", "succeeded", "hpcbridge-someone-else", "COMPLETED")
    poller.cycle(hpc)
    got = rt.store.get_job(job.id)
    assert got.status == "failed" and got.message.startswith("the scheduler lost this job")
    assert "finishing" not in events(rt.store, job.id)


async def test_slurm_status_gives_an_accounting_row_without_a_name_as_nameless():
    t = Scripted("", "60094|allocation|COMPLETED|0:0|00:00:01|1\n")
    states = await SlurmHandler(HPCConfig(id="c", user="u"), t).status_many(["60094"])
    assert states["60094"].name == "" and D.record_verdict(states["60094"], NAME) == D.NAMELESS


def test_a_forgotten_job_whose_answers_alternate_is_still_lost_in_time(make_runtime_lost):
    # seen on the real stack: the reused id was an element of another user's array, and
    # the answers by id went back and forth (nothing, a nameless row, another job's row)
    # while the job's own accounting row stayed PENDING for good
    rt, tmp_path = make_runtime_lost  # lost_after 0.2 s
    add_app(rt.store, tmp_path)
    job = submitted_job(rt.store)
    handler = NamedLookups(rt.handlers["local"])
    rt.handlers["local"] = handler
    answers = [{}, {"4242": JobState("4242", UNKNOWN, "PENDING", name="")},
               {"4242": NamedState("4242", "running", "hpcbridge-someone-else", "RUNNING")}]
    turn = {"n": 0}

    def status_many(ids):
        turn["n"] += 1
        return answers[turn["n"] % len(answers)]
    handler.faults["status_many"] = status_many
    handler.faults["find_states_by_name"] = lambda name: {
        "4242": JobState("4242", UNKNOWN, "PENDING", name=name)}
    poller, hpc = Poller(rt, threading.Event()), rt.hpcs["local"]
    deadline = time.monotonic() + 5
    while rt.store.get_job(job.id).status == "submitted" and time.monotonic() < deadline:
        poller.cycle(hpc)
        time.sleep(0.05)
    got = rt.store.get_job(job.id)
    assert got.status == "failed" and got.message.startswith("the scheduler lost this job")
