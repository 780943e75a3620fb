"""May this job be submitted? (server/submission.py) — the rules without HTTP: which app
and HPC, the manifest's rules with the chosen HPC's limits, upload ownership, drain, quota."""
from __future__ import annotations

import pytest

from hpcbridge.connectors.config import HPCConfig
from hpcbridge.manifest import ManifestError
from hpcbridge.server import errors as E
from hpcbridge.server.models import App
from hpcbridge.server.store import Store
from hpcbridge.server.submission import JobRequest, admit, app_info

MANIFEST = {"name": "t", "execution_stage": "true", "supported_hpc": ["local", "big", "x"],
            "default_hpc": "local",
            "param_rules": {"n": {"type": "integer", "min": 1, "max": 10, "default_value": 2}},
            "slurm_input_rules": {"time": {"min": 1, "max": 120, "default_value": 5},
                                  "partition": {}}}
HPCS = {"local": HPCConfig(id="local", scheduler="local", partitions=["debug"],
                           max_time_minutes=30),
        "big": HPCConfig(id="big", scheduler="slurm", partitions=["batch", "gpu"],
                         max_time_minutes=120)}


@pytest.fixture
def store(tmp_path) -> Store:
    store = Store(f"sqlite:///{tmp_path}/hpcbridge.db")
    store.put_app(App(id="t", name="t", source="/x", path="/x", manifest=MANIFEST))
    return store


def submit(store, user="alice", quota=None, **body):
    return admit(store, HPCS, user, JobRequest(app="t", **body), quota)


def errors_of(store, **body) -> list[dict]:
    with pytest.raises(ManifestError) as info:
        submit(store, **body)
    return info.value.details


def test_an_app_runs_on_the_configured_hpcs_it_names_by_id_else_by_scheduler_type(store):
    info = app_info(store.get_app("t"), HPCS)
    assert info.supported_hpc == ["local", "big"] and info.default_hpc == "local"
    only_types = App(id="u", name="u", source="/x", path="/x",
                     manifest={**MANIFEST, "supported_hpc": ["slurm"], "default_hpc": None})
    assert app_info(only_types, HPCS).supported_hpc == ["big"]
    assert app_info(only_types, HPCS).default_hpc == "big"


def test_a_valid_submission_gets_defaults_and_the_default_hpc(store):
    ok = submit(store)
    assert (ok.app, ok.hpc, ok.params, ok.resources, ok.upload) == (
        "t", "local", {"n": 2}, {"time": 5}, None)


def test_an_unknown_app_is_a_422_on_app(store):
    with pytest.raises(E.ValidationFailed) as info:
        admit(store, HPCS, "alice", JobRequest(app="nope"), None)
    assert info.value.details == [{"loc": ["app"], "msg": "unknown app"}]


def test_the_chosen_hpcs_limits_apply(store):
    assert submit(store, hpc="big", resources={"time": 100, "partition": "gpu"}).resources == {
        "time": 100, "partition": "gpu"}
    assert errors_of(store, resources={"time": 100, "partition": "gpu"}) == [
        {"loc": ["resources", "time"], "msg": "must be at most 30"},
        {"loc": ["resources", "partition"], "msg": "must be one of: debug"}]


def test_every_broken_rule_is_reported_at_once_hpc_last(store):
    assert errors_of(store, hpc="mars", params={"n": "5", "x": 1},
                     resources={"time": 0, "gpus": 1}) == [
        {"loc": ["params", "n"], "msg": "must be an integer"},
        {"loc": ["params", "x"], "msg": "unknown parameter"},
        {"loc": ["resources", "time"], "msg": "must be at least 1"},
        {"loc": ["resources", "gpus"], "msg": "unknown resource"},
        {"loc": ["hpc"], "msg": "must be one of: local, big"}]


def test_an_upload_must_be_the_callers_own(store):
    store.add_upload(id="u" * 32, user="bob", name="d.zip", path="/x", size=1)
    assert errors_of(store, upload="u" * 32) == [{"loc": ["upload"], "msg": "unknown upload"}]
    assert submit(store, user="bob", upload="u" * 32).upload == "u" * 32


def test_an_app_that_needs_data_refuses_a_submission_without(store):
    store.put_app(App(id="t", name="t", source="/x", path="/x",
                      manifest={**MANIFEST, "require_upload_data": True}))
    assert errors_of(store) == [{"loc": ["upload"], "msg": "is required"}]


def test_a_drained_hpc_is_a_409_after_the_rules(store):
    store.set_hpc_state("local", draining=True)
    with pytest.raises(E.Conflict):
        submit(store)
    assert errors_of(store, params={"n": 0})  # a broken rule is told first
    assert submit(store, hpc="big").hpc == "big"


def test_a_used_up_quota_is_refused(store):
    store.set_quota("alice", 10)
    assert submit(store).hpc == "local"
    assert store.charge(store.create_job(user="alice", app="t", hpc="local").id, 10)
    with pytest.raises(E.QuotaExceeded) as info:
        submit(store)
    assert "10 of 10 CPU-seconds" in info.value.message
    assert submit(store, user="bob", quota=None).app == "t"
    with pytest.raises(E.QuotaExceeded):
        submit(store, user="carol", quota=0)  # the site's default limit
