"""Parameter sweeps without HTTP (server/sweeps.py, server/storesweeps.py): grid expansion
with float-safe ranges, every point judged by the manifest's rules with the bad one named,
the size bound, and the store creating a sweep and its elements in one quick transaction."""
from __future__ import annotations

import time

import pytest

from hpcbridge.connectors.config import HPCConfig
from hpcbridge.lifecycle import JobStatus
from hpcbridge.manifest import ManifestError
from hpcbridge.server import errors as E
from hpcbridge.server.models import App
from hpcbridge.server.store import Store
from hpcbridge.server.sweeps import (
    SweepRequest,
    admit_sweep,
    expand_grid,
    range_values,
    sweep_points,
)

MANIFEST = {"name": "t", "execution_stage": "true", "supported_hpc": ["local"],
            "default_hpc": "local", "sweep_throttle": 4,
            "param_rules": {"n": {"type": "integer", "min": 1, "max": 10, "default_value": 2},
                            "x": {"type": "float", "min": 0, "max": 1, "require": True},
                            "mode": {"type": "string_option", "options": ["a", "b"],
                                     "default_value": "a"}},
            "slurm_input_rules": {"time": {"min": 1, "max": 120, "default_value": 5}}}
HPCS = {"local": HPCConfig(id="local", scheduler="local", max_time_minutes=30)}


@pytest.fixture
def store(tmp_path) -> Store:
    store = Store(f"sqlite:///{tmp_path}/hpcbridge.db")
    store.put_app(App(id="t", name="t", source="/x", path="/x", manifest=MANIFEST))
    return store


def admit(store, limit=10_000, **body):
    return admit_sweep(store, HPCS, "alice", SweepRequest(app="t", **body), None, limit)


def details(store, **body) -> list[dict]:
    with pytest.raises(ManifestError) as info:
        admit(store, **body)
    return info.value.details


@pytest.mark.parametrize("start, stop, step, values", [
    (0, 1, 0.1, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
    (1, 1.3, 0.1, [1.0, 1.1, 1.2]),  # numpy.arange gives 4 values here, 1.3 included
    (0, 0.3, 0.1, [0.0, 0.1, 0.2]),
    (0, 10, 3, [0, 3, 6, 9]),
    (1, 0, -0.25, [1.0, 0.75, 0.5, 0.25]),
    (0.05, 0.3, 0.1, [0.05, 0.15, 0.25]),
])
def test_ranges_are_like_arange_but_float_safe_and_integers_stay_integers(start, stop, step,
                                                                          values):
    got = range_values(start, stop, step, ["grid", "v", "range"])
    assert got == values
    assert [type(v) for v in got] == [type(v) for v in values]


@pytest.mark.parametrize("bounds, msg", [((0, 1, 0), "step not 0"), ((1, 1, 1), "empty"),
                                         ((0, 1, -0.1), "empty"),
                                         ((0, 100, 1), "at most 50")])
def test_a_bad_or_too_long_range_names_its_grid_key(bounds, msg):
    with pytest.raises(ManifestError) as info:
        range_values(*bounds, ["grid", "v", "range"], limit=50)
    assert info.value.details[0]["loc"] == ["grid", "v", "range"]
    assert msg in info.value.details[0]["msg"]


def test_a_grid_is_every_combination_over_base_the_last_name_fastest():
    points = expand_grid({"n": [1, 2], "x": {"range": [0, 0.3, 0.1]}}, {"mode": "b"})
    assert points == [{"mode": "b", "n": n, "x": x} for n in (1, 2) for x in (0.0, 0.1, 0.2)]
    with pytest.raises(ManifestError) as info:
        expand_grid({"n": [1]}, {"n": 2})
    assert info.value.details == [{"loc": ["base", "n"], "msg": "is also a grid axis"}]
    with pytest.raises(ManifestError) as info:
        expand_grid({"n": []})
    assert info.value.details == [{"loc": ["grid", "n"], "msg": "has no values"}]


def test_a_request_gives_params_or_grid_not_both_nor_an_empty_list():
    for body in ({}, {"params": [{}], "grid": {"n": [1]}}, {"params": []},
                 {"params": [{}], "base": {"n": 1}}):
        with pytest.raises(ManifestError):
            sweep_points(SweepRequest(app="t", **body))


def test_every_point_is_checked_and_the_bad_one_is_named_by_index(store):
    params = [{"n": 1, "x": 0.5}] * 17 + [{"n": 11, "x": 0.5}, {"n": 1, "x": 0.5, "y": 1}]
    assert details(store, params=params) == [
        {"loc": ["params", 17, "n"], "msg": "must be at most 10"},
        {"loc": ["params", 18, "y"], "msg": "unknown parameter"}]


def test_a_bad_grid_value_is_named_by_its_axis_once_however_many_points_hold_it(store):
    got = details(store, grid={"n": [1, 20], "x": {"range": [0, 2, 0.5]}, "z": [1]})
    assert got == [{"loc": ["grid", "z"], "msg": "unknown parameter"},
                   {"loc": ["grid", "x"], "msg": "value 1.5 must be at most 1"},
                   {"loc": ["grid", "n"], "msg": "value 20 must be at most 10"}]
    # a required parameter nobody gave belongs in base
    assert details(store, grid={"n": [1]}) == [{"loc": ["base", "x"], "msg": "is required"}]


def test_a_sweep_past_the_size_bound_is_refused_before_it_is_expanded(store):
    huge = {"n": list(range(1, 11)), "x": {"range": [0, 1, 1e-6]}}  # 10 × 1,000,000
    got = details(store, grid=huge)
    assert got[0]["loc"] == ["grid", "x", "range"] and "at most 10000" in got[0]["msg"]
    assert "at most 5" in details(store, limit=5, grid={"n": [1, 2, 3], "x": [0, 1]})[0]["msg"]
    assert details(store, limit=5, params=[{"x": 0}] * 6)[0]["loc"] == ["params"]


def test_resources_hpc_and_upload_are_judged_once_for_the_whole_sweep(store):
    got = details(store, params=[{"x": 0}], resources={"time": 500}, upload="nope")
    assert got == [{"loc": ["resources", "time"], "msg": "must be at most 120"},
                   {"loc": ["upload"], "msg": "unknown upload"}]
    store.set_hpc_state("local", draining=True)
    with pytest.raises(E.Conflict):
        admit(store, params=[{"x": 0}])


def test_an_admitted_sweep_has_clean_points_the_apps_throttle_and_resources(store):
    ok = admit(store, grid={"x": [0, 0.5]}, base={"mode": "b"})
    assert ok.points == [{"n": 2, "x": 0.0, "mode": "b"}, {"n": 2, "x": 0.5, "mode": "b"}]
    assert (ok.hpc, ok.resources, ok.throttle) == ("local", {"time": 5}, 4)
    assert admit(store, params=[{"x": 0}], throttle=2).throttle == 2


def test_the_store_creates_a_thousand_elements_in_one_quick_transaction(store):
    points = [{"x": i / 1000} for i in range(1000)]
    started = time.perf_counter()
    sweep = store.create_sweep("alice", "t", "local", {"time": 5}, None, 3, points)
    assert time.perf_counter() - started < 1.0
    assert store.sweep_counts([sweep.id]) == {sweep.id: {"queued": 1000}}
    jobs, total = store.sweep_jobs(sweep.id, limit=2, offset=500)
    assert total == 1000 and [(j.sweep_index, j.params) for j in jobs] == [
        (500, {"x": 0.5}), (501, {"x": 0.501})]
    assert [e.type for e in store.events(jobs[0].id)] == ["queued"]
    assert store.get_sweep(sweep.id, user="bob") is None
    assert store.list_sweeps("alice")[1] == 1 and store.list_sweeps("bob")[1] == 0


def test_cancelling_a_sweep_marks_each_active_element_once(store):
    sweep = store.create_sweep("alice", "t", "local", {}, None, None, [{"x": 0}] * 4)
    jobs, _ = store.sweep_jobs(sweep.id)
    assert store.transition(jobs[0].id, JobStatus.FAILED.value, "boom")
    marked = store.cancel_sweep(sweep.id)
    assert sorted(marked) == sorted(j.id for j in jobs[1:])
    assert store.cancel_sweep(sweep.id) == []  # a second request writes nothing
    after = {j.id: j for j in store.sweep_jobs(sweep.id)[0]}
    assert not after[jobs[0].id].cancel_requested
    assert all(after[i].cancel_requested for i in marked)
    assert [e.type for e in store.events(marked[0])] == ["queued", "cancel_requested"]


def test_an_idempotency_key_makes_one_sweep(store):
    fields = dict(app="t", hpc="local", resources={}, upload=None, throttle=None,
                  points=[{"x": 0}] * 3)
    sweep, first = store.create_sweep_once("alice", "k", "f1", **fields)
    assert first is None
    again, first = store.create_sweep_once("alice", "k", "f1", **fields)
    assert again.id == sweep.id and first.idempotency_fingerprint == "f1"
    assert store.list_sweeps("alice")[1] == 1
    assert store.job_by_key("alice", "k") is None  # apart from POST /jobs keys
    other, first = store.create_sweep_once("bob", "k", "f1", **fields)
    assert first is None and other.id != sweep.id
