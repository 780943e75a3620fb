"""An ended sweep's folder on the HPC (maintainer/tasks.clean_up_sweep) on a real maintainer
Runtime with the local transport: removed once when the sweep has ended and no element's
folder is left in it; kept as the HPC's cleanup setting says; an element folder left is
looked at again, then kept; a failed removal never fails anything, leaves an event and is
done by a later task (what reconciliation offers)."""
from __future__ import annotations

import datetime as dt
import os

import pytest
from maintainer_helpers import site_config

from hpcbridge.clock import utcnow
from hpcbridge.config import Site
from hpcbridge.connectors.errors import HPCUnavailable
from hpcbridge.connectors.layout import SweepDir
from hpcbridge.maintainer import tasks


@pytest.fixture
def make_runtime(tmp_path):
    from hpcbridge.maintainer.runtime import Runtime
    made = []

    def make(cleanup: str):
        config = site_config(tmp_path)
        config.Site.hpcs[0]["cleanup"] = cleanup
        rt = Runtime(Site(config=config), worker_id="test-worker")
        made.append(rt)
        return rt
    yield make
    for rt in made:
        rt.close()


def sweep_on_hpc(rt, tmp_path, size=2, left=(), end=("failed", "failed")):
    """A sweep whose folder exists on the (local) HPC with app/, data/ and the element
    folders in `left`; its elements moved to the final statuses `end`."""
    store = rt.store
    sweep = store.create_sweep("alice", app="hello", hpc="local", resources={}, upload=None,
                               throttle=None, points=[{"i": i} for i in range(size)])
    folder = SweepDir.of(str(tmp_path / "work"), "alice", sweep.id)
    for sub in ["app", "data", *[f"elements/{i}/result" for i in left]]:
        os.makedirs(f"{folder.path}/{sub}")
    open(f"{folder.path}/app/run.sh", "w").close()
    store.update_sweep(sweep.id, remote_dir=folder.path)
    jobs = store.sweep_elements(sweep.id)
    for job, status in zip(jobs, end):
        steps = ["staging", "submitted", "running", "finishing"] if status == "succeeded" \
            else []
        for step in [*steps, status]:
            assert store.transition(job.id, step, step)
    return store.get_sweep(sweep.id), jobs, folder


def test_an_ended_sweeps_folder_is_removed_once_when_no_element_folder_is_left(
        make_runtime, tmp_path):
    rt = make_runtime("always")
    sweep, jobs, folder = sweep_on_hpc(rt, tmp_path)
    assert tasks.clean_up_sweep(rt, jobs[1]) == "sweep folder removed"
    assert not os.path.exists(folder.path)
    assert rt.store.get_sweep(sweep.id).cleaned_at is not None
    assert [e.type for e in rt.store.events(jobs[1].id)].count("sweep_cleaned") == 1
    assert tasks.clean_up_sweep(rt, jobs[0]) == "nothing to do"  # once
    assert tasks.drive(rt, jobs[0].id) == "nothing to do"


def test_a_sweep_still_running_keeps_its_folder(make_runtime, tmp_path):
    rt = make_runtime("always")
    sweep, jobs, folder = sweep_on_hpc(rt, tmp_path, end=("failed",))
    assert rt.store.get_sweep(sweep.id).ended_at is None
    assert tasks.clean_up_sweep(rt, jobs[0]) == "nothing to do"
    assert os.path.isdir(folder.app)


def test_an_element_folder_left_is_looked_at_again_then_the_folder_is_kept(
        make_runtime, tmp_path):
    rt = make_runtime("always")
    sweep, jobs, folder = sweep_on_hpc(rt, tmp_path, left=[1])
    assert "looked at again later" in tasks.clean_up_sweep(rt, jobs[1])
    assert rt.store.get_sweep(sweep.id).cleaned_at is None
    assert rt.store.sweeps_to_clean("local") == [(sweep.id, min(j.id for j in jobs))]
    # still there long after the end: its results were not all collected; kept
    rt.store.update_sweep(sweep.id, ended_at=utcnow() - dt.timedelta(
        seconds=tasks.SWEEP_CLEANUP_GRACE_SECONDS + 1))
    assert "kept" in tasks.drive(rt, jobs[0].id)  # what reconciliation's offer runs
    assert os.path.isdir(folder.element(1).result) and os.path.isdir(folder.app)
    assert rt.store.get_sweep(sweep.id).cleaned_at is not None
    assert rt.store.sweeps_to_clean("local") == []


@pytest.mark.parametrize("cleanup,end", [("never", ("succeeded", "succeeded")),
                                         ("on_success", ("succeeded", "failed"))])
def test_the_cleanup_setting_keeps_the_folder_without_looking(make_runtime, tmp_path,
                                                              monkeypatch, cleanup, end):
    rt = make_runtime(cleanup)
    sweep, jobs, folder = sweep_on_hpc(rt, tmp_path, end=end)
    monkeypatch.setattr(rt.handlers["local"].transport, "listdir", None)  # never called
    assert tasks.clean_up_sweep(rt, jobs[0]) == "sweep folder kept (cleanup setting)"
    assert os.path.isdir(folder.app) and rt.store.get_sweep(sweep.id).cleaned_at is not None


def test_on_success_with_every_element_succeeded_removes_it(make_runtime, tmp_path):
    rt = make_runtime("on_success")
    sweep, jobs, folder = sweep_on_hpc(rt, tmp_path, end=("succeeded", "succeeded"))
    assert tasks.clean_up_sweep(rt, jobs[0]) == "sweep folder removed"
    assert not os.path.exists(folder.path)


def test_a_failed_removal_is_evented_and_done_by_a_later_task(make_runtime, tmp_path,
                                                              monkeypatch):
    rt = make_runtime("always")
    sweep, jobs, folder = sweep_on_hpc(rt, tmp_path)
    transport = rt.handlers["local"].transport
    real = transport.rmtree

    async def down(path):
        raise HPCUnavailable("the login node does not answer")
    monkeypatch.setattr(transport, "rmtree", down)
    assert tasks.clean_up_sweep(rt, jobs[1]) == "sweep folder: not removed yet"
    event = rt.store.events(jobs[1].id)[-1]
    assert event.type == "cleanup_failed" and "does not answer" in event.message
    assert rt.store.get_job(jobs[1].id).status == "failed"  # the job is untouched
    assert rt.store.get_sweep(sweep.id).cleaned_at is None
    assert tasks.clean_up_sweep(rt, jobs[1]) == "sweep folder: not removed yet"
    assert [e.type for e in rt.store.events(jobs[1].id)].count("cleanup_failed") == 1
    monkeypatch.setattr(transport, "rmtree", real)
    assert tasks.drive(rt, jobs[0].id) == "sweep folder removed"
    assert not os.path.exists(folder.path)
