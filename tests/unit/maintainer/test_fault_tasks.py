"""The rq tasks under faults (maintainer/tasks.py, cancel.py), on a real store and the
local handler with a FaultyHandler in front: exactly once against the scheduler (the
attempt is recorded before sbatch, only then is the job looked up by name, and a lookup
that fails means "ask again"), every class of error to its action, and a cancel after an
attempt takes back what the scheduler may hold."""
from __future__ import annotations

import time

from fault_fakes import faulty
from maintainer_helpers import HELLO, add_app, events, new_job

from hpcbridge.clock import utcnow
from hpcbridge.connectors.errors import HostKeyError, SchedulerError, SchedulerUnavailable
from hpcbridge.maintainer.tasks import drive

SLEEPER = {**HELLO, "execution_stage": "echo up; sleep 60"}
DOWN = SchedulerUnavailable("local: sbatch: the scheduler does not answer: "
                            "Unable to contact slurm controller")


def until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_no_lookup_by_name_without_an_attempt(runtime, tmp_path):
    add_app(runtime.store, tmp_path)
    job = new_job(runtime.store)
    handler = faulty(runtime)
    assert drive(runtime, job.id) == "submitted"
    assert handler.calls == {"submit": 1}  # no squeue/sacct by name: nothing to find
    assert runtime.store.get_job(job.id).submit_attempted_at is not None


def test_an_attempt_recorded_is_looked_up_and_never_submitted_twice(runtime, tmp_path):
    add_app(runtime.store, tmp_path, SLEEPER)
    job = new_job(runtime.store)
    handler = faulty(runtime)
    assert drive(runtime, job.id) == "submitted"
    first = runtime.store.get_job(job.id).scheduler_id
    # as the store holds it when a worker died between sbatch and recording its answer
    runtime.store.update_job(job.id, status="staging", scheduler_id=None)
    assert drive(runtime, job.id) == "found"
    assert runtime.store.get_job(job.id).scheduler_id == first
    assert handler.calls["submit"] == 1 and handler.calls["find_by_name"] == 1
    runtime.run(handler.inner.cancel(first))


def test_a_lookup_that_fails_means_ask_again_never_not_there(runtime, tmp_path):
    add_app(runtime.store, tmp_path)
    job = new_job(runtime.store, submit_attempted_at=utcnow())
    handler = faulty(runtime)
    handler.faults["find_by_name"] = SchedulerUnavailable("squeue failed: the answer is unknown")
    assert drive(runtime, job.id) == "hpc unavailable"
    got = runtime.store.get_job(job.id)
    assert got.status == "queued" and got.message.startswith("waiting for local:")
    assert handler.calls["submit"] == 0  # unknown is never "not submitted"
    del handler.faults["find_by_name"]
    assert drive(runtime, job.id) == "waiting for capacity"  # the HPC is down: not tried
    runtime.store.set_hpc_state("local", reachable=True)  # as its poller finds it again
    assert drive(runtime, job.id) == "submitted"
    assert handler.calls["submit"] == 1


def test_sbatch_while_the_controller_is_down_waits_then_submits_once(runtime, tmp_path):
    add_app(runtime.store, tmp_path)
    job = new_job(runtime.store)
    handler = faulty(runtime)
    handler.faults["submit"] = DOWN
    assert drive(runtime, job.id) == "hpc unavailable"
    got = runtime.store.get_job(job.id)
    assert got.status == "queued" and got.submit_attempted_at is not None
    assert got.message == f"waiting for local: {DOWN}"
    assert events(runtime.store, job.id)[-1] == "waiting"
    state = runtime.store.hpc_state("local")
    assert state.reachable is False and "Unable to contact" in state.message
    del handler.faults["submit"]
    runtime.store.set_hpc_state("local", reachable=True)  # as its poller finds it again
    assert drive(runtime, job.id) == "submitted"
    assert handler.calls["find_by_name"] == 1  # the attempt was recorded: looked up first
    assert "failed" not in events(runtime.store, job.id)


def test_a_changed_host_key_marks_the_hpc_misconfigured_and_the_job_waits(runtime, tmp_path):
    add_app(runtime.store, tmp_path)
    job = new_job(runtime.store)
    faulty(runtime).faults["submit"] = HostKeyError("local: host key not verifiable")
    assert drive(runtime, job.id) == "hpc unavailable"
    assert runtime.store.get_job(job.id).status == "queued"
    state = runtime.store.hpc_state("local")
    assert state.reachable is False
    assert state.message.startswith("misconfigured (an administrator must fix it)")


def test_a_job_the_scheduler_refuses_fails_with_its_words(runtime, tmp_path):
    add_app(runtime.store, tmp_path)
    job = new_job(runtime.store)
    refusal = SchedulerError("sbatch refused the job: invalid partition specified: gpu")
    faulty(runtime).faults["submit"] = refusal
    assert drive(runtime, job.id) == "failed"
    got = runtime.store.get_job(job.id)
    assert got.status == "failed" and got.message == str(refusal)


def test_a_cancel_after_an_attempt_takes_back_the_job_of_its_name(runtime, tmp_path):
    add_app(runtime.store, tmp_path, SLEEPER)
    job = new_job(runtime.store)
    handler = faulty(runtime)
    assert drive(runtime, job.id) == "submitted"
    sid = runtime.store.get_job(job.id).scheduler_id
    # sbatch's answer was lost: the job went back to the queue, the scheduler has it
    runtime.store.update_job(job.id, status="queued", scheduler_id=None)
    runtime.store.request_cancel(job.id)
    assert drive(runtime, job.id) == "cancelled"
    assert handler.calls["find_by_name"] >= 1 and handler.calls["cancel"] == 1
    until(lambda: runtime.run(handler.inner.status_many([sid]))[sid].status == "cancelled")
    assert "cancel_sent" in events(runtime.store, job.id)


def test_a_cancel_whose_lookup_fails_waits(runtime, tmp_path):
    add_app(runtime.store, tmp_path)
    job = new_job(runtime.store, submit_attempted_at=utcnow())
    faulty(runtime).faults["find_by_name"] = SchedulerUnavailable("the answer is unknown")
    runtime.store.request_cancel(job.id)
    assert drive(runtime, job.id) == "hpc unavailable"
    assert runtime.store.get_job(job.id).status == "queued"  # not cancelled blind


def test_a_cancel_of_a_job_never_attempted_asks_nothing(runtime, tmp_path):
    add_app(runtime.store, tmp_path)
    job = new_job(runtime.store)
    handler = faulty(runtime)
    runtime.store.request_cancel(job.id)
    assert drive(runtime, job.id) == "cancelled"
    assert handler.calls == {}
