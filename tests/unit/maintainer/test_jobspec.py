"""A stored job as the scheduler and the job see it (maintainer/jobspec.py, pure): the
remote work dir (connectors/layout.py), the environment, the JobSpec and job.json."""
import json
import os
import subprocess

import pytest

from hpcbridge.connectors.layout import WorkDir, safe_user_dir
from hpcbridge.connectors.spec import render_batch_script
from hpcbridge.maintainer import jobspec as J
from hpcbridge.manifest import ManifestError


@pytest.mark.parametrize("user", ["alice", "a@b.org", "x y", "..", "../../etc", "", "é", "a/b"])
def test_user_dirs_are_one_safe_component(user):
    d = safe_user_dir(user)
    assert d and "/" not in d and not d.startswith(".")
    assert all(c.isalnum() and c.isascii() or c in "_.+-" for c in d)


def test_user_dirs_do_not_collide():
    names = ["a@b", "a+40b", "a b", "a_b", "a.b", "A@b", ".a", "a", "+2ea", "..", "."]
    assert len({safe_user_dir(n) for n in names}) == len(names)


def test_remote_workdir_and_its_layout():
    w = WorkDir.of("/home/h/root/", "a@b", "abc")
    assert w.path == "/home/h/root/a+40b/abc"
    assert (w.result, w.data, w.job_json) == (f"{w.path}/result", f"{w.path}/data",
                                              f"{w.path}/job.json")
    assert (w.log("stdout"), w.log("stderr")) == (f"{w.path}/stdout.log", f"{w.path}/stderr.log")


def test_job_environment_is_strings_with_booleans_as_json():
    env = J.job_environment("id1", WorkDir("/w/id1"), {"n": 3, "x": 0.5, "flag": True, "s": "hi"},
                            has_data=False)
    assert env["param_n"] == "3" and env["param_x"] == "0.5" and env["param_flag"] == "true"
    assert env["HPCBRIDGE_DATA_DIR"] == "" and env["HPCBRIDGE_RESULT_DIR"] == "/w/id1/result"
    assert env["HPCBRIDGE_JOB_JSON"] == "/w/id1/job.json"
    assert all(isinstance(v, str) for v in env.values())


class _Job:
    id = "0123456789abcdef0123456789abcdef"
    user, app, hpc = "alice", "hello", "slurm"

    def __init__(self, params, resources):
        self.params, self.resources = params, resources


class _HPC:
    default_partition = "debug"


def test_build_spec_defaults_and_resources():
    spec = J.build_spec(_Job({}, {}), "echo hi", WorkDir("/w/j"), _HPC(), False)
    assert spec.name == "hpcbridge-" + _Job.id
    assert (spec.time_minutes, spec.cpus, spec.partition) == (10, 1, "debug")
    assert spec.command.startswith("mkdir -p result\n")
    spec = J.build_spec(_Job({}, {"time": 1, "cpus": 4, "memory": 256, "partition": "p2"}),
                        "x", WorkDir("/w/j"), _HPC(), True)
    assert (spec.time_minutes, spec.cpus, spec.memory_mb, spec.partition) == (1, 4, 256, "p2")
    assert spec.environment["HPCBRIDGE_DATA_DIR"] == "/w/j/data"


def test_hostile_parameters_stay_data(tmp_path):
    """Parameters reach the job as environment values, never as shell text."""
    hostile = "$(touch pwned); `touch pwned2`; ' \" \\ \n; echo done"
    workdir = str(tmp_path / "w")
    os.makedirs(workdir)
    spec = J.build_spec(_Job({"s": hostile}, {}), 'printf %s "$param_s" > result/out',
                        WorkDir(workdir), _HPC(), False)
    script = tmp_path / "job.sh"
    script.write_text(render_batch_script(spec))
    subprocess.run(["bash", str(script)], check=True, cwd=workdir, timeout=30)
    assert (tmp_path / "w" / "result" / "out").read_text() == hostile
    assert not any(p.name.startswith("pwned") for p in tmp_path.rglob("*"))


def test_job_json_carries_the_request():
    data = json.loads(J.job_json(_Job({"n": 1}, {"time": 2})))
    assert data == {"id": _Job.id, "user": "alice", "app": "hello", "hpc": "slurm",
                    "params": {"n": 1}, "resources": {"time": 2}}


class _App:
    def __init__(self, manifest):
        self.manifest = manifest


def test_spec_for_takes_the_command_from_the_manifest():
    manifest = {"name": "hello", "supported_hpc": ["slurm"], "pre_processing_stage": "a",
                "execution_stage": "b", "post_processing_stage": "c"}
    spec = J.spec_for(_Job({}, {}), _App(manifest), WorkDir("/w/j"), _HPC(), False)
    assert spec.command == "mkdir -p result\na\nb\nc"


@pytest.mark.parametrize("app,resources,message", [
    (None, {}, "app hello is no longer registered"),
    (_App({"name": "hello"}), {},
     "the manifest of app hello is no longer valid: manifest.execution_stage: Field required"),
    (_App(None), {}, "cannot build the job: TypeError: "),
    (_App({"name": "hello", "execution_stage": "x", "supported_hpc": []}), {"cpus": -2},
     "cannot build the job: 1 validation error for JobSpec"),
])
def test_spec_for_says_why_a_job_cannot_be_built(app, resources, message):
    with pytest.raises(ManifestError) as caught:
        J.spec_for(_Job({}, resources), app, WorkDir("/w/j"), _HPC(), False)
    assert caught.value.message.startswith(message), caught.value.message
