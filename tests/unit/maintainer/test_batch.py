"""The batched submit path (maintainer/batch.py) on a real store and the local handler
behind a FaultyHandler: one task admits, stages and submits a batch of queued jobs in fair
order; the lookup by name runs once per batch and only for jobs with an sbatch attempt;
each job's failure stays its own."""
from __future__ import annotations

import pytest
from fault_fakes import faulty
from maintainer_helpers import add_app, new_job, site_config

from hpcbridge.clock import utcnow
from hpcbridge.config import Site
from hpcbridge.connectors.errors import SchedulerError, SchedulerUnavailable
from hpcbridge.maintainer.tasks import drive


@pytest.fixture
def roomy(tmp_path):
    """A Runtime whose local HPC has room for 10 jobs; batches of 4."""
    from hpcbridge.maintainer.runtime import Runtime
    c = site_config(tmp_path, submit_batch_size=4)
    c.Site.hpcs = [{**c.Site.hpcs[0], "capacity": 10}]
    rt = Runtime(Site(config=c), worker_id="test-worker")
    yield rt
    rt.close()


def counting(rt):
    """A FaultyHandler that also counts the batched lookups."""
    handler = faulty(rt)
    inner_many = handler.find_many_by_name

    async def find_many_by_name(names):
        handler.calls["find_many_by_name"] += 1
        return await inner_many(names)
    handler.find_many_by_name = find_many_by_name
    return handler


def test_one_task_submits_a_batch_in_fair_order(roomy, tmp_path):
    add_app(roomy.store, tmp_path)
    alice = [new_job(roomy.store, user="alice") for _ in range(4)]
    bob = [new_job(roomy.store, user="bob") for _ in range(2)]
    handler = counting(roomy)
    assert drive(roomy, alice[0].id) == "submitted"
    jobs = {j.id: roomy.store.get_job(j.id) for j in alice + bob}
    submitted = sorted((j for j in jobs.values() if j.status == "submitted"),
                       key=lambda j: int(j.scheduler_id))
    # a batch of 4, taken turn about: alice, bob, alice, bob
    assert [j.user for j in submitted] == ["alice", "bob", "alice", "bob"]
    assert handler.calls["submit"] == 4 and handler.calls["find_many_by_name"] == 0
    assert all(j.submit_attempted_at and j.remote_dir for j in submitted)
    rest = [j for j in jobs.values() if j.status == "queued"]
    assert len(rest) == 2
    assert drive(roomy, rest[0].id) == "submitted"  # the next round takes the rest
    assert {roomy.store.get_job(j.id).status for j in jobs.values()} == {"submitted"}
    # a task for a job an earlier batch moved on finds nothing left to do
    assert drive(roomy, alice[0].id).startswith("submitted")


def test_attempted_jobs_are_looked_up_once_per_batch(roomy, tmp_path):
    add_app(roomy.store, tmp_path)
    fresh = new_job(roomy.store)
    tried = [new_job(roomy.store, submit_attempted_at=utcnow()) for _ in range(2)]
    handler = counting(roomy)
    previous = roomy.run(handler.inner.submit(_spec(roomy, tried[0])))
    assert drive(roomy, fresh.id) == "submitted"
    assert handler.calls["find_many_by_name"] == 1
    found = roomy.store.get_job(tried[0].id)
    assert found.status == "submitted" and found.scheduler_id == previous
    assert handler.calls["submit"] == 2  # the fresh one and the one nobody had


def _spec(rt, job):
    """A job submitted under `job`'s name behind hpcbridge's back (as a lost answer)."""
    from hpcbridge.connectors.layout import WorkDir
    from hpcbridge.maintainer.jobspec import spec_for
    transport = rt.handlers["local"].transport
    workdir = WorkDir.of(rt.run(transport.resolve_work_root()), job.user, job.id)
    rt.run(transport.makedirs(workdir.path))
    return spec_for(job, rt.store.get_app(job.app), workdir, rt.hpcs["local"], False)


def test_each_job_s_failure_is_its_own(roomy, tmp_path):
    add_app(roomy.store, tmp_path)
    good, refused, gone = (new_job(roomy.store) for _ in range(3))
    roomy.store.update_job(gone.id, app="no-such-app")
    handler = counting(roomy)
    real_submit = handler.inner.submit

    async def submit(spec):
        if refused.id in spec.name:
            raise SchedulerError("sbatch refused the job: Invalid partition")
        return await real_submit(spec)
    handler.inner.submit = submit
    assert drive(roomy, good.id) == "submitted"
    got = {j.id: roomy.store.get_job(j.id) for j in (good, refused, gone)}
    assert got[refused.id].status == "failed" and "Invalid partition" in got[refused.id].message
    assert got[gone.id].status == "failed" and "no longer registered" in got[gone.id].message


def test_the_hpc_down_at_sbatch_sends_the_batch_back_to_wait(roomy, tmp_path):
    add_app(roomy.store, tmp_path)
    jobs = [new_job(roomy.store) for _ in range(3)]
    handler = counting(roomy)
    handler.faults["submit"] = SchedulerUnavailable("Unable to contact slurm controller")
    assert drive(roomy, jobs[0].id) == "hpc unavailable"
    got = [roomy.store.get_job(j.id) for j in jobs]
    assert {j.status for j in got} == {"queued"}
    # the attempt stays recorded: the next round looks the batch up first, once
    assert all(j.submit_attempted_at for j in got)
    handler.faults.clear()
    roomy.store.set_hpc_state("local", reachable=True, message=None)
    assert drive(roomy, jobs[0].id) == "submitted"
    assert handler.calls["find_many_by_name"] == 1
