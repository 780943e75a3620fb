"""A job that can no longer be built — its app's stored manifest breaks today's rules, the
app is gone, or the job holds what the rules no longer allow — ends `failed` with the
reason as its message: never left in `staging`, never staged, never submitted."""
from __future__ import annotations

import pytest
from maintainer_helpers import HELLO, add_app, events, new_job

from hpcbridge.lifecycle import JobStatus
from hpcbridge.maintainer.tasks import drive


def run_to_rest(rt, job_id: str):
    result = drive(rt, job_id)
    return result, rt.store.get_job(job_id)


@pytest.mark.parametrize("manifest,reason", [
    ({"name": "hello", "supported_hpc": ["local"]},
     "the manifest of app hello is no longer valid: manifest.execution_stage: Field required"),
    ({**HELLO, "slurm_input_rules": {"walltime": {"min": 1}}},
     "the manifest of app hello is no longer valid: unknown slurm_input_rules ['walltime']"),
    ({**HELLO, "param_rules": {"not an identifier": {"type": "integer"}}},
     "the manifest of app hello is no longer valid: parameter names must be identifiers"),
])
def test_a_manifest_that_no_longer_parses_fails_the_job(runtime, tmp_path, workdir_files,
                                                        manifest, reason):
    add_app(runtime.store, tmp_path, manifest)
    job = new_job(runtime.store)
    result, job = run_to_rest(runtime, job.id)
    assert result == "failed"
    assert job.status == JobStatus.FAILED
    assert job.message.startswith(reason), job.message
    assert events(runtime.store, job.id) == ["queued", "staging", "failed"]
    assert workdir_files() == []  # nothing was staged
    assert job.scheduler_id is None


def test_anything_else_raised_while_building_the_spec_fails_the_job(runtime, tmp_path):
    add_app(runtime.store, tmp_path, ["not", "a", "mapping"])  # parse_manifest: TypeError
    job = new_job(runtime.store)
    result, job = run_to_rest(runtime, job.id)
    assert (result, job.status) == ("failed", "failed")
    assert job.message.startswith("cannot build the job: TypeError: "), job.message


def test_a_resource_the_spec_refuses_fails_the_job(runtime, tmp_path):
    add_app(runtime.store, tmp_path)
    job = new_job(runtime.store)
    runtime.store.update_job(job.id, resources={"time": "soon"})
    result, job = run_to_rest(runtime, job.id)
    assert (result, job.status) == ("failed", "failed")
    assert job.message.startswith("cannot build the job: invalid literal for int()"), \
        job.message


def test_a_job_whose_app_is_gone_fails(runtime):
    job = new_job(runtime.store, app="removed")
    result, job = run_to_rest(runtime, job.id)
    assert (result, job.status) == ("failed", "failed")
    assert job.message == "app removed is no longer registered"


def test_a_sound_job_is_staged_and_submitted(runtime, tmp_path, workdir_files):
    """The same path with a good manifest: the failures above are the manifest's doing."""
    add_app(runtime.store, tmp_path)
    job = new_job(runtime.store)
    try:
        result, job = run_to_rest(runtime, job.id)
        assert (result, job.status) == ("submitted", "submitted"), job.message
        assert events(runtime.store, job.id) == ["queued", "staging", "staged", "submitted"]
        assert f"alice/{job.id}/job.json" in workdir_files()
        assert f"alice/{job.id}/run.sh" in workdir_files()
    finally:
        if job.scheduler_id:
            runtime.run(runtime.handlers["local"].cancel(job.scheduler_id))
