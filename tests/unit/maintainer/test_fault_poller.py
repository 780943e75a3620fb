"""The poller under faults (maintainer/poller.py, reconcile.resolve_unseen), on a real
store, embedded Redis and the local handler with a FaultyHandler in front: a reused
scheduler id is never taken as the job's status, a job the scheduler lost is resolved,
each HPC is polled on its own (a hung one delays no other), the lease is renewed while a
cycle waits and a lease lost mid-cycle ends the cycle quietly, and an HPC that comes back
gets its queued jobs offered at once."""
from __future__ import annotations

import threading
import time

import pytest
from fault_fakes import NamedState, faulty
from maintainer_helpers import add_app, events, new_job, site_config

from hpcbridge.config import Site
from hpcbridge.maintainer.poller import Poller
from hpcbridge.maintainer.runtime import Runtime


def running_job(store, hpc="local", sid="4242"):
    job = new_job(store)
    store.update_job(job.id, hpc=hpc, status="running", scheduler_id=sid)
    return store.get_job(job.id)


def make_runtime(tmp_path, hpcs=("local",), **tuning) -> Runtime:
    c = site_config(tmp_path, **tuning)
    base = c.Site.hpcs[0]
    c.Site.hpcs = [{**base, "id": h, "work_root": str(tmp_path / f"work-{h}")} for h in hpcs]
    return Runtime(Site(config=c), worker_id="test-worker")


@pytest.fixture
def make(tmp_path):
    made = []

    def _make(*args, **kw):
        made.append(make_runtime(tmp_path, *args, **kw))
        return made[-1]
    yield _make
    for rt in made:
        rt.close()


def test_a_reused_id_is_never_the_jobs_status_and_a_lost_job_fails(runtime, tmp_path):
    add_app(runtime.store, tmp_path)
    job = running_job(runtime.store)
    handler = faulty(runtime)
    # the id now names another job, which completed; nobody knows our job's name
    handler.faults["status_many"] = lambda ids: {
        i: NamedState(i, "succeeded", "hpcbridge-someone-else", "COMPLETED", 0) for i in ids}
    handler.faults["find_by_name"] = lambda name: None
    Poller(runtime, threading.Event()).cycle(runtime.hpcs["local"])
    got = runtime.store.get_job(job.id)
    assert got.status == "failed", got
    assert got.message.startswith("the scheduler lost this job")
    assert "finishing" not in events(runtime.store, job.id)


def test_a_reused_id_whose_job_has_another_id_is_followed_there(runtime, tmp_path):
    add_app(runtime.store, tmp_path)
    job = running_job(runtime.store)
    handler = faulty(runtime)
    handler.faults["status_many"] = lambda ids: {
        i: NamedState(i, "running", "hpcbridge-someone-else", "RUNNING") for i in ids}
    handler.faults["find_by_name"] = lambda name: "777"
    Poller(runtime, threading.Event()).cycle(runtime.hpcs["local"])
    got = runtime.store.get_job(job.id)
    assert got.status == "running" and got.scheduler_id == "777"
    assert "scheduler_id" in events(runtime.store, job.id)


def test_a_job_missing_for_lost_after_seconds_is_looked_up_then_resolved(make, tmp_path):
    rt = make(lost_after_seconds=0.5)
    add_app(rt.store, tmp_path)
    job = running_job(rt.store)
    handler = faulty(rt)
    handler.faults["status_many"] = lambda ids: {}  # neither queue nor accounting
    handler.faults["find_by_name"] = lambda name: None
    poller, hpc = Poller(rt, threading.Event()), rt.hpcs["local"]
    poller.cycle(hpc)
    assert handler.calls["find_by_name"] == 0  # accounting may lag: not yet
    assert rt.store.get_job(job.id).status == "running"
    time.sleep(0.6)
    poller.cycle(hpc)
    assert handler.calls["find_by_name"] == 1
    assert rt.store.get_job(job.id).status == "failed"


def cycles_of(rt, hpc: str) -> int:
    return int(rt.redis.hget(rt.key("stats", hpc), "cycles") or 0)


def test_an_hpc_whose_status_hangs_delays_no_other(make, tmp_path):
    rt = make(hpcs=("stuck", "fine"), cycle_deadline_seconds=1.5)
    add_app(rt.store, tmp_path)
    running_job(rt.store, hpc="stuck")
    faulty(rt, "stuck").faults["status_many"] = "hang"
    stop = threading.Event()
    poller = Poller(rt, stop)
    thread = threading.Thread(target=poller.run, daemon=True)
    thread.start()
    time.sleep(4)
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    fine, stuck = cycles_of(rt, "fine"), cycles_of(rt, "stuck")
    assert fine >= 12, (fine, stuck)  # poll_interval 0.2 s: it kept its pace
    assert 1 <= stuck <= 3, (fine, stuck)  # each stuck cycle ended at its deadline
    state = rt.store.hpc_state("stuck")
    assert state.reachable is False and "deadline" in state.message
    assert rt.store.hpc_state("fine").reachable is True
    assert not poller.leases  # released at the end


def test_the_lease_is_renewed_while_a_cycle_waits(make, tmp_path):
    rt = make(lease_min_seconds=0.6, lease_poll_intervals=1.0, cycle_deadline_seconds=3)
    add_app(rt.store, tmp_path)
    running_job(rt.store)
    faulty(rt).faults["status_many"] = "hang"
    poller, hpc = Poller(rt, threading.Event()), rt.hpcs["local"]
    assert poller.hold(hpc)
    key = rt.key("lease", "local")
    cycle = threading.Thread(target=poller.cycle, args=(hpc,))
    cycle.start()
    holders = []
    while cycle.is_alive():
        holders.append(rt.redis.get(key))
        time.sleep(0.1)
    assert len(holders) >= 20  # the cycle waited ~3 s, five leases long
    assert set(holders) == {b"test-worker"}  # never free for a second poller
    assert poller.last_stats.get("unreachable") is True


def test_a_lease_lost_mid_cycle_ends_the_cycle_quietly(make, tmp_path):
    rt = make(lease_min_seconds=0.6, lease_poll_intervals=1.0, cycle_deadline_seconds=30)
    add_app(rt.store, tmp_path)
    running_job(rt.store)
    faulty(rt).faults["status_many"] = "hang"
    poller, hpc = Poller(rt, threading.Event()), rt.hpcs["local"]
    assert poller.hold(hpc)
    threading.Timer(0.5, rt.redis.set, args=(rt.key("lease", "local"), "another")).start()
    started = time.monotonic()
    poller.cycle(hpc)  # raises nothing
    assert time.monotonic() - started < 2
    assert poller.last_stats.get("lease_lost") is True
    assert "local" not in poller.leases
    assert rt.store.hpc_state("local").reachable is not False  # not the HPC's fault


def test_an_hpc_that_comes_back_gets_its_queued_jobs_offered_at_once(runtime, tmp_path):
    add_app(runtime.store, tmp_path)
    job = new_job(runtime.store)
    offered = []
    runtime.enqueue_advance = lambda job_id, hpc: offered.append(job_id)
    poller, hpc = Poller(runtime, threading.Event()), runtime.hpcs["local"]
    poller.cycle(hpc)
    poller.cycle(hpc)  # within resend_seconds: offered once
    assert offered == [job.id]
    runtime.store.set_hpc_state("local", reachable=False, message="down")
    poller.cycle(hpc)  # it answers again: its queued jobs go out now, not in 30 s
    assert offered == [job.id, job.id]
    assert runtime.store.hpc_state("local").reachable is True


def test_a_job_the_scheduler_holds_is_told_once_why_it_waits(runtime, tmp_path):
    add_app(runtime.store, tmp_path)
    job = new_job(runtime.store)
    runtime.store.update_job(job.id, status="submitted", scheduler_id="4242")
    name = f"hpcbridge-{job.id}"
    handler = faulty(runtime)
    handler.faults["status_many"] = lambda ids: {
        i: NamedState(i, "submitted", name, "PENDING", reason="launch failed requeued held")
        for i in ids}
    poller = Poller(runtime, threading.Event())
    for _ in range(3):
        poller.cycle(runtime.hpcs["local"])
    held = [e for e in runtime.store.events(job.id) if e.type == "waiting"]
    assert len(held) == 1, held
    assert "held by local (launch failed requeued held)" in held[0].message
    assert "released" in held[0].message
    assert runtime.store.get_job(job.id).status == "submitted"
    # a job pending for an ordinary reason says nothing
    other = new_job(runtime.store)
    runtime.store.update_job(other.id, status="submitted", scheduler_id="4343")
    handler.faults["status_many"] = lambda ids: {
        i: NamedState(i, "submitted", f"hpcbridge-{other.id}" if i == "4343" else name,
                      "PENDING", reason="Priority") for i in ids}
    poller.cycle(runtime.hpcs["local"])
    assert "waiting" not in events(runtime.store, other.id)


@pytest.mark.parametrize("marker,status,message", [
    (b"0", "finishing", "ran to its end (exit code 0); collecting results"),
    (b"3\n", "finishing", "ran to its end (exit code 3); collecting logs"),
    (b"rm -rf /", "failed", "the scheduler lost this job"),  # the job's file: untrusted
    (b"999", "failed", "the scheduler lost this job"),
    (None, "failed", "the scheduler lost this job"),  # never ended, or never ran
    ("fifo", "failed", "the scheduler lost this job"),  # never opened, never waited on
])
def test_a_lost_job_whose_exit_marker_says_it_ended_is_collected(make, tmp_path, marker,
                                                                   status, message):
    import os

    from hpcbridge.connectors.layout import EXIT_MARKER
    rt = make(lost_after_seconds=0.2)
    add_app(rt.store, tmp_path)
    job = running_job(rt.store)
    workdir = tmp_path / "work-local" / "alice" / job.id
    workdir.mkdir(parents=True)
    rt.store.update_job(job.id, remote_dir=str(workdir))
    if marker == "fifo":
        os.mkfifo(workdir / EXIT_MARKER)
    elif marker is not None:
        (workdir / EXIT_MARKER).write_bytes(marker)
    handler = faulty(rt)
    handler.faults["status_many"] = lambda ids: {}  # the controller forgot it
    handler.faults["find_by_name"] = lambda name: None  # and nobody knows its name
    poller, hpc = Poller(rt, threading.Event()), rt.hpcs["local"]
    poller.cycle(hpc)
    time.sleep(0.3)
    poller.cycle(hpc)
    got = rt.store.get_job(job.id)
    assert got.status == status, got
    assert message in got.message
    if status == "finishing":
        assert got.outcome == ("succeeded" if marker == b"0" else "failed")
        assert got.exit_code == int(marker)
