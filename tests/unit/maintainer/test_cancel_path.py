"""The one cancel path (maintainer/cancel.py), as the rq task and the poller use it, on a
real store and the local handler: before submission a job never reaches the scheduler; in
the scheduler's queue it is asked to stop (again only after cancel_resend_seconds) and
ends `cancelled` once the scheduler says so."""
from __future__ import annotations

import threading
import time

from maintainer_helpers import HELLO, add_app, events, new_job

from hpcbridge.maintainer.poller import Poller
from hpcbridge.maintainer.tasks import drive

SLEEPER = {**HELLO, "execution_stage": "echo up; sleep 60"}


def submitted_job(rt, tmp_path):
    add_app(rt.store, tmp_path, SLEEPER)
    job = new_job(rt.store)
    assert drive(rt, job.id) == "submitted"
    return rt.store.get_job(job.id)


def until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_queued_job_is_cancelled_without_the_scheduler(runtime, tmp_path):
    add_app(runtime.store, tmp_path)
    job = new_job(runtime.store)
    runtime.store.request_cancel(job.id)
    assert drive(runtime, job.id) == "cancelled"
    job = runtime.store.get_job(job.id)
    assert job.status == "cancelled" and job.message == "cancelled before it reached the scheduler"
    assert events(runtime.store, job.id) == ["queued", "cancel_requested", "cancelled"]


def test_the_poller_cancels_a_queued_job_the_same_way(runtime, tmp_path):
    add_app(runtime.store, tmp_path)
    job = new_job(runtime.store)
    runtime.store.request_cancel(job.id)
    Poller(runtime, threading.Event()).cycle(runtime.hpcs["local"])
    job = runtime.store.get_job(job.id)
    assert job.status == "cancelled" and job.message == "cancelled before it reached the scheduler"


def test_a_job_found_submitted_while_staging_is_taken_back(runtime, tmp_path):
    """A worker died after the scheduler took the job: cancel finds it by name."""
    job = submitted_job(runtime, tmp_path)
    # as the store would hold it had the worker died between submit and recording it
    runtime.store.update_job(job.id, status="staging", scheduler_id=None)
    runtime.store.request_cancel(job.id)
    assert drive(runtime, job.id) == "cancelled"
    local = runtime.handlers["local"]
    until(lambda: runtime.run(local.status_many([job.scheduler_id]))[job.scheduler_id]
          .status == "cancelled")


def test_a_running_job_is_asked_to_stop_and_ends_cancelled(runtime, tmp_path):
    job = submitted_job(runtime, tmp_path)
    runtime.store.request_cancel(job.id)
    poller = Poller(runtime, threading.Event())
    hpc = runtime.hpcs["local"]
    poller.cycle(hpc)  # sends the cancel
    poller.cycle(hpc)  # within cancel_resend_seconds: not sent again
    assert events(runtime.store, job.id).count("cancel_sent") == 1

    def ended():
        poller.cycle(hpc)
        return runtime.store.get_job(job.id).status == "finishing"
    until(ended)
    assert drive(runtime, job.id) == "cancelled"
    job = runtime.store.get_job(job.id)
    assert job.status == "cancelled" and job.message == "cancelled"
    types = events(runtime.store, job.id)
    assert types.index("cancel_sent") < types.index("finishing") < types.index("cancelled")


def test_the_task_sends_a_cancel_for_a_submitted_job(runtime, tmp_path):
    job = submitted_job(runtime, tmp_path)
    runtime.store.request_cancel(job.id)
    assert drive(runtime, job.id) == "cancel sent"
    assert "cancel_sent" in events(runtime.store, job.id)
    local = runtime.handlers["local"]
    until(lambda: runtime.run(local.status_many([job.scheduler_id]))[job.scheduler_id]
          .status == "cancelled")
