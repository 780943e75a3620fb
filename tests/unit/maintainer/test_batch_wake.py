"""The HPC's wake (hpcbridge.taskqueue.request_wake, maintainer/batch.wake) on a real store,
the embedded Redis and the local handler: many new jobs ask for one rq task, not one each;
the task takes a batch and, when more had room, asks for the next (the other worker's);
a job created once a wake has started asks for a new one, so none is left waiting."""
from __future__ import annotations

import pytest
from maintainer_helpers import add_app, new_job, site_config
from rq import Queue

from hpcbridge.config import Site
from hpcbridge.maintainer import batch
from hpcbridge.taskqueue import WAKE_TASK, queue_name, request_wake, wake_key


@pytest.fixture
def roomy(tmp_path):
    """A Runtime whose local HPC has room for 10 jobs; batches of 4; installed as the
    process's runtime (the rq entry point finds it so)."""
    from hpcbridge.maintainer import runtime as R
    c = site_config(tmp_path, submit_batch_size=4)
    c.Site.hpcs = [{**c.Site.hpcs[0], "capacity": 10}]
    rt = R.Runtime(Site(config=c), worker_id="test-worker")
    R.install(rt)
    yield rt
    R.install(None)
    rt.close()


def pending(rt) -> list:
    """The rq tasks waiting in the local HPC's queue."""
    return Queue(queue_name(rt.site.queue_prefix, "local"), connection=rt.redis).get_jobs()


def wake(rt) -> bool:
    return request_wake(rt.redis, rt.site.queue_prefix, "local")


def test_many_new_jobs_ask_for_one_wake(roomy, tmp_path):
    add_app(roomy.store, tmp_path)
    asked = [wake(roomy) for _ in (new_job(roomy.store) for _ in range(5))]
    assert asked == [True, False, False, False, False]
    tasks = pending(roomy)
    assert [(t.func_name, t.args) for t in tasks] == [(WAKE_TASK, ("local",))]
    assert roomy.redis.ttl(wake_key(roomy.site.queue_prefix, "local")) > 0  # never stuck


def test_a_wake_takes_a_batch_and_asks_for_the_next(roomy, tmp_path):
    add_app(roomy.store, tmp_path)
    jobs = [new_job(roomy.store) for _ in range(6)]
    assert wake(roomy)
    [first] = pending(roomy)
    first.delete()  # run here instead of by a worker
    assert batch.wake("local") == "4 submitted"
    # 2 more had room: the next wake is already asked for, before this one ended
    [second] = pending(roomy)
    assert second.func_name == WAKE_TASK
    second.delete()
    assert batch.wake("local") == "2 submitted"
    assert pending(roomy) == []  # nothing more to do: no wake asked for
    assert {roomy.store.get_job(j.id).status for j in jobs} == {"submitted"}


def test_a_job_created_while_a_wake_runs_asks_for_another(roomy, tmp_path):
    add_app(roomy.store, tmp_path)
    new_job(roomy.store)
    assert wake(roomy)
    pending(roomy)[0].delete()
    real_admit = batch.admit_next
    late = []

    def admit_next(rt, hpc_id, size):  # a POST lands after the wake started
        late.append(new_job(rt.store))
        late.append(wake(rt))
        return real_admit(rt, hpc_id, size)
    batch.admit_next = admit_next
    try:
        assert batch.wake("local") == "2 submitted"
    finally:
        batch.admit_next = real_admit
    # the late job asked for its own wake (this one had cleared its key): were it not
    # admitted by the running wake, that task would take it
    assert late[1] is True and [t.func_name for t in pending(roomy)] == [WAKE_TASK]
    assert roomy.store.get_job(late[0].id).status == "submitted"
    pending(roomy)[0].delete()
    assert batch.wake("local") == "nothing admissible"


def test_a_wake_of_an_hpc_known_down_tells_its_queued_jobs_why(roomy, tmp_path):
    add_app(roomy.store, tmp_path)
    job = new_job(roomy.store)
    roomy.store.set_hpc_state("local", reachable=False, message="no route to host")
    assert batch.wake("local") == "nothing admissible"
    got = roomy.store.get_job(job.id)
    assert got.status == "queued" and got.message == "waiting for local: no route to host"
    assert batch.wake("local") == "nothing admissible"  # told once, not at every wake
    assert [e.type for e in roomy.store.events(job.id)].count("waiting") == 1
