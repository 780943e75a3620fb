"""Manifest rules (hpcbridge/manifest.py), exhaustively: every param type with its bounds,
step, required, unknown, defaults; the Slurm resource rules; the manifest itself. The cases
the panel shares are in tests/vectors/validation.json (tests/unit/server/test_validation_vectors.py)."""
from __future__ import annotations

import json
import os

import pytest

from hpcbridge.config import BUNDLED_APPS
from hpcbridge.manifest import ManifestError, parse_manifest, validate_params, validate_resources


def manifest(params=None, slurm=None, **extra):
    data = {"name": "t", "execution_stage": "true", "supported_hpc": ["local"],
            "param_rules": params or {}, "slurm_input_rules": slurm or {}}
    data.update(extra)
    return parse_manifest(data)


def failure(fn, *args) -> list[dict]:
    """The 422's details (loc as a list, msg) of a call that must fail."""
    with pytest.raises(ManifestError) as info:
        fn(*args)
    assert info.value.details, "a 422 names the offending fields"
    return info.value.details


def locs(details) -> list[list]:
    return [d["loc"] for d in details]


# --- integer ---------------------------------------------------------------------------
INT = manifest({"n": {"type": "integer", "min": 1, "max": 10}})


@pytest.mark.parametrize("given, expected", [
    (1, 1), (10, 10), (5, 5), (4.0, 4),
])
def test_integer_accepts(given, expected):
    clean = validate_params(INT, {"n": given})
    assert clean == {"n": expected} and type(clean["n"]) is int


@pytest.mark.parametrize("given, msg", [
    (0, "must be at least 1"), (11, "must be at most 10"), (-5, "must be at least 1"),
    (2.5, "must be an integer"), ("2.5", "must be an integer"), ("x", "must be an integer"),
    ("7", "must be an integer"), (" 3 ", "must be an integer"),  # text stays text
    (True, "must be an integer"), (False, "must be an integer"), ([1], "must be an integer"),
    ({"a": 1}, "must be an integer"), (10**400, "must be at most 10"),
    ("9" * 5000, "must be an integer"),  # past Python's int-string limit: no 500
])
def test_integer_refuses(given, msg):
    details = failure(validate_params, INT, {"n": given})
    assert details == [{"loc": ["params", "n"], "msg": msg}]


# --- float -----------------------------------------------------------------------------
FLOAT = manifest({"x": {"type": "float", "min": 0.5, "max": 2.5}})


@pytest.mark.parametrize("given, expected", [
    (0.5, 0.5), (2.5, 2.5), (1, 1.0), (1.25, 1.25), (2, 2.0),
])
def test_float_accepts(given, expected):
    clean = validate_params(FLOAT, {"x": given})
    assert clean == {"x": expected} and isinstance(clean["x"], float)


@pytest.mark.parametrize("given, msg", [
    (0.49, "must be at least 0.5"), (2.51, "must be at most 2.5"), ("abc", "must be a number"),
    (float("nan"), "must be a finite number"), (float("inf"), "must be a finite number"),
    ("nan", "must be a number"), ("1.25", "must be a number"),
    (10**400, "must be a finite number"),  # float(10**400) overflows: 422, not 500
    (True, "must be a number"), (None, None),
])
def test_float_refuses(given, msg):
    if given is None:  # None means "not given": default (none here) and not required
        assert validate_params(FLOAT, {"x": None}) == {}
        return
    assert failure(validate_params, FLOAT, {"x": given}) == [
        {"loc": ["params", "x"], "msg": msg}]


def test_bounds_without_min_or_max():
    m = manifest({"lo": {"type": "integer", "min": 0}, "hi": {"type": "float", "max": 1}})
    assert validate_params(m, {"lo": 10**12, "hi": -1e300}) == {"lo": 10**12, "hi": -1e300}
    assert locs(failure(validate_params, m, {"lo": -1, "hi": 2})) == [
        ["params", "lo"], ["params", "hi"]]


# --- step (counted from min, or from 0) -------------------------------------------------
STEP = manifest({"even": {"type": "integer", "step": 2},
                 "odd": {"type": "integer", "min": 1, "step": 2},
                 "quarter": {"type": "float", "min": 0, "max": 1, "step": 0.25},
                 "tenth": {"type": "float", "step": 0.1}},
                slurm={"memory": {"min": 128, "max": 4096, "step": 128}})


@pytest.mark.parametrize("params", [
    {"even": 0}, {"even": -4}, {"even": 10**400}, {"odd": 1}, {"odd": 7},
    {"quarter": 0.75}, {"quarter": 1}, {"tenth": 0.30000000000000004}, {"tenth": 0.7},
])
def test_step_accepts_multiples(params):
    assert validate_params(STEP, params) == params


@pytest.mark.parametrize("params, msg", [
    ({"even": 3}, "must be a multiple of 2"),
    ({"even": 10**400 + 1}, "must be a multiple of 2"),  # exact for integers of any size
    ({"odd": 4}, "must be 1 plus a multiple of 2"),
    ({"quarter": 0.3}, "must be a multiple of 0.25"),
    ({"quarter": 1.25}, "must be at most 1"),  # min and max come before step
    ({"tenth": 0.35}, "must be a multiple of 0.1"),
])
def test_step_refuses_the_rest(params, msg):
    [name] = params
    assert failure(validate_params, STEP, params) == [{"loc": ["params", name], "msg": msg}]


def test_step_applies_to_resources():
    assert validate_resources(STEP, {"memory": 256}, [], 60) == {"memory": 256}
    assert failure(validate_resources, STEP, {"memory": 200}, [], 60) == [
        {"loc": ["resources", "memory"], "msg": "must be a multiple of 128"}]


def test_a_null_or_empty_value_takes_the_default_unless_required():
    m = manifest({"n": {"type": "integer", "default_value": 3}})
    assert validate_params(m, {"n": None}) == validate_params(m, {"n": ""}) == {"n": 3}
    required = manifest({"s": {"type": "string_input", "require": True, "default_value": "w"}})
    assert validate_params(required, {}) == {"s": "w"}
    for params in ({"s": None}, {"s": ""}):
        assert failure(validate_params, required, params) == [
            {"loc": ["params", "s"], "msg": "is required"}]


# --- string_option ---------------------------------------------------------------------
OPT = manifest({"method": {"type": "string_option", "options": ["sieve", "trial", "1"]}})


@pytest.mark.parametrize("given, expected", [("sieve", "sieve"), ("trial", "trial"),
                                             ("1", "1")])
def test_option_accepts(given, expected):
    assert validate_params(OPT, {"method": given}) == {"method": expected}


@pytest.mark.parametrize("given", ["Sieve", "sieve ", "other", 2, 1, ["sieve"]])
def test_option_refuses(given):
    assert failure(validate_params, OPT, {"method": given}) == [
        {"loc": ["params", "method"], "msg": "must be one of: sieve, trial, 1"}]


def test_option_without_options_refuses_everything():
    m = manifest({"o": {"type": "string_option"}})
    assert locs(failure(validate_params, m, {"o": "a"})) == [["params", "o"]]


# --- string_input ----------------------------------------------------------------------
STR = manifest({"s": {"type": "string_input"}})


@pytest.mark.parametrize("given", ["a", "x" * 10000, "$(rm -rf /); `id` 'q' \"d\"",
                                   "multi\nline", "ünïcode ✓"])
def test_string_accepts_anything_textual(given):
    # parameters reach the job as data (env / job.json), never spliced into shell text
    assert validate_params(STR, {"s": given}) == {"s": given}


@pytest.mark.parametrize("given, msg", [
    (5, "must be a string"), (True, "must be a string"), (["a"], "must be a string"),
    ("x" * 10001, "must be at most 10000 characters"), ("a\0b", "must not contain NUL bytes"),
])
def test_string_refuses(given, msg):
    assert failure(validate_params, STR, {"s": given}) == [{"loc": ["params", "s"], "msg": msg}]


# --- boolean ---------------------------------------------------------------------------
BOOL = manifest({"b": {"type": "boolean"}})


@pytest.mark.parametrize("given", [True, False])
def test_boolean_accepts(given):
    assert validate_params(BOOL, {"b": given}) == {"b": given}


@pytest.mark.parametrize("given", [1, 0, "true", "false", "yes", [True]])
def test_boolean_refuses(given):
    assert failure(validate_params, BOOL, {"b": given}) == [
        {"loc": ["params", "b"], "msg": "must be true or false"}]


# --- required, defaults, unknown -------------------------------------------------------
def test_required_without_default_is_an_error_when_missing_or_empty():
    m = manifest({"name": {"type": "string_input", "require": True}})
    for params in ({}, {"name": None}, {"name": ""}):
        assert failure(validate_params, m, params) == [
            {"loc": ["params", "name"], "msg": "is required"}]
    assert validate_params(m, {"name": "x"}) == {"name": "x"}


def test_defaults_fill_missing_values_and_are_validated_like_input():
    m = manifest({"n": {"type": "integer", "default_value": 3, "min": 1},
                  "s": {"type": "string_input", "default_value": "world", "require": True},
                  "o": {"type": "string_option", "options": ["a", "b"], "default_value": "b"},
                  "f": {"type": "float", "default_value": "0.25"},
                  "b": {"type": "boolean", "default_value": False},
                  "none": {"type": "integer"}})
    assert validate_params(m, {}) == {"n": 3, "s": "world", "o": "b", "f": 0.25, "b": False}
    assert validate_params(m, {"n": 9, "b": True})["n"] == 9
    bad_default = manifest({"n": {"type": "integer", "default_value": 0, "min": 1}})
    assert failure(validate_params, bad_default, {}) == [
        {"loc": ["params", "n"], "msg": "must be at least 1"}]


def test_unknown_params_are_refused_each_with_its_name():
    details = failure(validate_params, INT, {"n": 2, "zz": 1, "rm -rf": "x"})
    assert locs(details) == [["params", "zz"], ["params", "rm -rf"]]
    assert all(d["msg"] == "unknown parameter" for d in details)


def test_every_error_is_reported_at_once_and_summarised():
    m = manifest({"a": {"type": "integer", "max": 1}, "b": {"type": "boolean"},
                  "c": {"type": "string_input", "require": True}})
    with pytest.raises(ManifestError) as info:
        validate_params(m, {"a": 2, "b": "no", "d": 1})
    # rules in their order, then unknown names: the panel's order
    assert locs(info.value.details) == [
        ["params", "a"], ["params", "b"], ["params", "c"], ["params", "d"]]
    assert "(and 3 more)" in info.value.message


def test_no_rules_no_params():
    assert validate_params(manifest(), {}) == {}
    assert locs(failure(validate_params, manifest(), {"x": 1})) == [["params", "x"]]


# --- resources (slurm_input_rules) -----------------------------------------------------
SLURM = manifest(slurm={"time": {"min": 1, "max": 30, "default_value": 5},
                        "cpus": {"min": 1, "max": 4, "default_value": 1},
                        "memory": {"min": 64, "max": 4096},
                        "partition": {"options": ["debug", "gpu"]}})


def resources(**kw) -> dict:
    return kw


def test_resources_defaults_apply_and_unset_rules_stay_unset():
    assert validate_resources(SLURM, resources(), ["debug"], 60) == {"time": 5, "cpus": 1}


def test_resources_within_bounds():
    clean = validate_resources(SLURM, resources(time=30, cpus=4, memory=64, partition="gpu"),
                               ["debug"], 60)
    assert clean == {"time": 30, "cpus": 4, "memory": 64, "partition": "gpu"}


@pytest.mark.parametrize("given, loc, msg", [
    ({"time": 0}, "time", "must be at least 1"),
    ({"time": 31}, "time", "must be at most 30"),
    ({"cpus": 5}, "cpus", "must be at most 4"),
    ({"memory": 63}, "memory", "must be at least 64"),
    ({"partition": "other"}, "partition", "must be one of: debug, gpu"),
    ({"partition": 3}, "partition", "must be one of: debug, gpu"),
    ({"gpus": 1}, "gpus", "unknown resource"),
    ({"cpus": "2"}, "cpus", "must be an integer"),
    ({"cpus": 2.5}, "cpus", "must be an integer"),
    ({"cpus": True}, "cpus", "must be an integer"),
])
def test_resources_refused(given, loc, msg):
    assert failure(validate_resources, SLURM, resources(**given), ["debug"], 60) == [
        {"loc": ["resources", loc], "msg": msg}]


def test_resource_time_is_capped_by_the_hpc_even_when_the_app_allows_more():
    assert failure(validate_resources, SLURM, resources(time=20), ["debug"], 10) == [
        {"loc": ["resources", "time"], "msg": "must be at most 10"}]
    # and the app's default is capped too
    assert locs(failure(validate_resources, SLURM, resources(), ["debug"], 4)) == [
        ["resources", "time"]]


def test_partition_without_options_uses_the_hpcs_partitions():
    m = manifest(slurm={"partition": {}})
    assert validate_resources(m, resources(partition="b"), ["a", "b"], 60) == {"partition": "b"}
    assert failure(validate_resources, m, resources(partition="c"), ["a", "b"], 60) == [
        {"loc": ["resources", "partition"], "msg": "must be one of: a, b"}]


def test_an_app_without_slurm_rules_lets_nothing_be_set():
    m = manifest()
    assert validate_resources(m, resources(), ["debug"], 60) == {}
    assert locs(failure(validate_resources, m, resources(cpus=2, time=1), ["debug"], 60)) == [
        ["resources", "cpus"], ["resources", "time"]]  # unknown names in the order sent


# --- the manifest itself ---------------------------------------------------------------
@pytest.mark.parametrize("app", sorted(os.listdir(BUNDLED_APPS)))
def test_bundled_manifests_parse(app):
    with open(os.path.join(BUNDLED_APPS, app, "manifest.json")) as f:
        m = parse_manifest(json.load(f))
    assert m.execution_stage and m.supported_hpc
    validate_params(m, {})  # their defaults satisfy their own rules
    validate_resources(m, {}, ["debug"], 60)


@pytest.mark.parametrize("data, where", [
    ({"execution_stage": "x", "supported_hpc": []}, "manifest.name"),
    ({"name": "x", "supported_hpc": []}, "manifest.execution_stage"),
    ({"name": "x", "execution_stage": "x", "supported_hpc": [],
      "param_rules": {"n": {"type": "complex"}}}, "manifest.param_rules.n.type"),
])
def test_invalid_manifests_say_where(data, where):
    with pytest.raises(ManifestError) as info:
        parse_manifest(data)
    assert info.value.message.startswith(where)
    assert info.value.details[0]["loc"][0] == "manifest"


@pytest.mark.parametrize("params, slurm, text", [
    ({"not-an-identifier": {"type": "integer"}}, {}, "identifiers"),
    ({"1x": {"type": "integer"}}, {}, "identifiers"),
    ({}, {"walltime": {}}, "unknown slurm_input_rules"),
    ({}, {"time": {"default_value": "5"}}, "time.default_value must be an integer"),
    ({}, {"cpus": {"default_value": 1.5}}, "cpus.default_value must be an integer"),
    ({}, {"cpus": {"default_value": True}}, "cpus.default_value must be an integer"),
    ({}, {"partition": {"default_value": 3}}, "partition.default_value must be a string"),
])
def test_manifest_rules_are_checked_when_parsed(params, slurm, text):
    with pytest.raises(ManifestError) as info:
        manifest(params, slurm)
    assert text in info.value.message


def test_command_joins_the_stages_in_order():
    m = manifest(pre_processing_stage="a", post_processing_stage="c", execution_stage="b")
    assert m.command() == "a\nb\nc"
    assert manifest().command() == "true"
