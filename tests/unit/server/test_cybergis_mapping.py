"""The CyberGIS-Compute translation rules (server/compat/cgmap.py, cgviews.py): tokens and
hub hosts, Slurm inputs ↔ resources, parameters, event types, error messages, objects."""
from __future__ import annotations

import base64
import datetime as dt
from types import SimpleNamespace

import pytest

from hpcbridge import schemas as S
from hpcbridge.server import errors as E
from hpcbridge.server.compat import cgmap as M
from hpcbridge.server.compat import cgviews as V
from hpcbridge.server.compat.cybergis import CyberGISCompat


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- tokens and hosts -----------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1:8000", "http://127.0.0.1:8000",
                                  "HTTPS://127.0.0.1:8000/", "127.0.0.1:8000/hub/"])
def test_the_hub_host_is_read_with_or_without_a_scheme(host):
    assert M.decode_token(b64(f"{host}@abc123")) == ("127.0.0.1:8000", "abc123")


@pytest.mark.parametrize("value", [None, "", 5, "%%%s3cret", b64("s3cret"), b64("s3cret@"),
                                   b64("@s3cret"), b64("s3cret@  "), "s3cret"])
def test_a_malformed_token_is_unauthorized_and_never_echoed(value):
    with pytest.raises(E.Unauthorized) as info:
        M.decode_token(value)
    assert "token" in info.value.message.lower() and "s3cret" not in info.value.message


def test_allowed_hosts_default_to_the_hub_api_url_and_can_be_configured(monkeypatch):
    ctx = SimpleNamespace(authenticator=SimpleNamespace(hub_api_url="http://Hub.ex:8081/hub/api"))
    assert CyberGISCompat().allowed_hosts(ctx) == ["hub.ex:8081"]
    configured = CyberGISCompat(jupyterhub_hosts=["https://hub.example.org/", "x:1"])
    assert configured.allowed_hosts(ctx) == ["hub.example.org", "x:1"]
    monkeypatch.delenv("JUPYTERHUB_API_URL", raising=False)
    static = SimpleNamespace(authenticator=SimpleNamespace())  # StaticTokenAuthenticator
    assert CyberGISCompat().allowed_hosts(static) == []


def test_routes_live_under_the_prefix_and_an_empty_prefix_turns_them_off():
    patterns = [r[0] for r in CyberGISCompat(prefix="/cg/v2/").routes("/services/hb/")]
    assert "/services/hb/cg/v2/job/(?P<job_id>[^/]+)/submit/?" in patterns
    assert all(p.startswith("/services/hb/cg/v2/") for p in patterns)
    assert CyberGISCompat(prefix="").routes("/") == []


# --- Slurm inputs ---------------------------------------------------------------------------
@pytest.mark.parametrize("value,minutes", [
    (5, 5), (2.5, 3), ("90", 90), ("10:00", 10), ("10:30", 11), ("01:30:00", 90),
    ("00:00:30", 1), ("1-00:00:00", 1440), ("2-3", 3060), ("1-02:03", 1563)])
def test_slurm_times_become_minutes(value, minutes):
    assert M.parse_time(value) == minutes


@pytest.mark.parametrize("value", ["abc", "1:2:3:4", True, -1, "", None, "1h"])
def test_other_times_are_refused(value):
    with pytest.raises(ValueError):
        M.parse_time(value)


@pytest.mark.parametrize("value,mb", [(256, 256), ("512MB", 512), ("512", 512), ("4G", 4096),
                                      ("1.5GB", 1536), ("1024K", 1), ("1t", 1048576)])
def test_slurm_memory_becomes_megabytes(value, mb):
    assert M.parse_memory(value) == mb


@pytest.mark.parametrize("value", ["lots", "5 PB", False, "-3MB"])
def test_other_memory_is_refused(value):
    with pytest.raises(ValueError):
        M.parse_memory(value)


def test_slurm_inputs_map_onto_resources():
    slurm = {"time": "00:20:00", "num_of_task": 2, "cpu_per_task": 2, "memory_per_cpu": "1G",
             "partition": "debug", "gpus_per_node": 1, "num_of_node": 1}
    resources, notify = M.slurm_to_resources(slurm, {"time", "cpus", "memory"})
    assert resources == {"time": 20, "cpus": 4, "memory": 4096, "partition": "debug",
                         "gpus": 1}
    assert notify is None
    assert M.slurm_to_resources({"memory": "2G", "memory_per_cpu": "1G"}, set())[0] == \
        {"memory": 2048}


def test_the_client_forms_defaults_are_dropped_only_where_the_app_has_no_rule():
    form = {"time": "01:00:00", "num_of_task": 1, "cpu_per_task": 1}
    assert M.slurm_to_resources(form, set())[0] == {}
    assert M.slurm_to_resources(form, {"time"})[0] == {"time": 60}
    assert M.slurm_to_resources(form, {"cpus"})[0] == {"cpus": 1}
    # a value the user chose is kept: the manifest's rules then judge it
    assert M.slurm_to_resources({"time": "00:30:00"}, set())[0] == {"time": 30}


def test_slurm_mail_becomes_an_email_notification():
    assert M.slurm_to_resources({"mail_user": ["a@b.org"], "mail_type": ["FAIL", "END"]},
                                set())[1] == {"email": "a@b.org"}
    assert M.slurm_to_resources({"mail_user": "a@b.org"}, set())[1] == {"email": "a@b.org"}
    assert M.slurm_to_resources({"mail_user": ["a@b.org"], "mail_type": ["BEGIN"]},
                                set())[1] is None


def test_every_unreadable_slurm_input_is_named_at_once():
    with pytest.raises(E.ValidationFailed) as info:
        M.slurm_to_resources({"num_of_node": 2, "gpus_per_task": 1, "time": "soon",
                              "cpu_per_task": "two", "colour": "red"}, set())
    locs = [d["loc"] for d in info.value.details]
    assert locs == [["slurm", "num_of_node"], ["slurm", "gpus_per_task"], ["slurm", "time"],
                    ["slurm", "cpu_per_task"], ["slurm", "colour"]]
    assert "one node" in info.value.details[0]["msg"]


def test_resources_read_back_in_slurm_spellings():
    assert M.resources_to_slurm({"time": 90, "cpus": 2, "memory": 512, "partition": "p"}) == {
        "time": "01:30:00", "num_of_task": 1, "cpu_per_task": 2, "memory": "512MB",
        "partition": "p"}
    resources = {"time": 75, "cpus": 3, "memory": 100, "gpus": 1}
    assert M.slurm_to_resources(M.resources_to_slurm(resources), {"time", "cpus"})[0] == \
        resources


# --- parameters and errors ------------------------------------------------------------------
def test_parameters_sent_as_text_become_numbers_and_booleans_of_their_rule():
    rules = {"n": S.ParamRule(type="integer"), "x": S.ParamRule(type="float"),
             "b": S.ParamRule(type="boolean"), "s": S.ParamRule(type="string_input")}
    sent = {"n": "5", "x": "0.5", "b": "True", "s": "7", "other": "1"}
    assert M.coerce_params(sent, rules) == {"n": 5, "x": 0.5, "b": True, "s": "7",
                                            "other": "1"}
    # not a whole number, not a number: left as sent, for the rules to refuse
    assert M.coerce_params({"n": "5.5", "x": "nan", "b": "yes"}, rules) == \
        {"n": 5.5, "x": "nan", "b": "yes"}
    assert M.coerce_params({"n": "1e3"}, rules) == {"n": 1000.0}


def test_error_messages_speak_cybergis():
    details = [{"loc": ["params", "lines"], "msg": "must be at most 100"},
               {"loc": ["resources", "cpus"], "msg": "must be at most 2"},
               {"loc": ["notify", "email"], "msg": "no mail server"},
               {"loc": ["upload"], "msg": "unknown upload"},
               {"loc": ["app"], "msg": "unknown app"}, {"loc": ["hpc"], "msg": "x"}]
    assert M.error_messages(details) == [
        "param.lines must be at most 100", "slurm.cpu_per_task must be at most 2",
        "slurm.mail_user no mail server", "localDataFolder unknown upload",
        "localExecutableFolder.gitId unknown app", "hpc x"]


# --- objects --------------------------------------------------------------------------------
T0 = dt.datetime(2026, 1, 2, 3, 4, 5)


def stored_job(status="succeeded", **over):
    job = dict(id="a" * 32, user="alice", app="hello", hpc="slurm", status=status,
               message="m", params={"name": "x"}, resources={"time": 5, "cpus": 1},
               upload=None, scheduler_id="42", created_at=T0, updated_at=T0,
               submitted_at=T0, finished_at=T0 if status in ("succeeded", "failed",
                                                             "cancelled") else None,
               log_changed_at=None, elapsed_seconds=3)
    job.update(over)
    return SimpleNamespace(**job)


JOB2OBJECT = ["id", "userId", "secretToken", "slurmId", "maintainer", "hpc",
              "remoteExecutableFolder", "remoteDataFolder", "remoteResultFolder",
              "localExecutableFolder", "localDataFolder", "param", "env", "slurm",
              "createdAt", "updatedAt", "deletedAt", "initializedAt", "finishedAt",
              "isFailed", "events", "logs"]


def test_a_job_object_has_every_field_the_client_reads():
    events = [SimpleNamespace(type=t, message=f"{t}!", time=T0) for t in
              ("queued", "staging", "submitted", "running", "cancel_requested", "cancelled")]
    out = V.job_object(stored_job("cancelled"), "alice@hub:8000", events)
    assert all(k in out for k in JOB2OBJECT) and out["secretToken"] is None
    assert [e["type"] for e in out["events"]] == [
        "JOB_QUEUED", "JOB_REGISTERED", "JOB_INIT", "JOB_RUNNING", "JOB_CANCEL_REQUESTED",
        "JOB_FAILED"]
    assert out["events"][-1]["message"] == "cancelled: cancelled!"
    assert out["createdAt"] == "2026-01-02T03:04:05.000Z" and out["isFailed"] is True
    assert out["localExecutableFolder"] == {"type": "git", "gitId": "hello"}
    assert out["remoteResultFolder"]["id"] == "a" * 32 and out["slurmId"] == "42"
    assert V.job_object(stored_job("running"), "u@h")["remoteResultFolder"] is None
    ended = V.job_object(stored_job(), "u@h", [SimpleNamespace(type="succeeded",
                                                                message="ok", time=T0)])
    assert ended["events"][-1]["type"] in M.TERMINAL and ended["isFailed"] is False


def test_a_draft_object_has_the_same_fields_and_no_events():
    out = V.draft_object({"id": "b" * 32, "hpc": None, "param": {"n": 1}}, "u@h")
    assert all(k in out for k in JOB2OBJECT)
    assert out["events"] == [] and out["logs"] == [] and out["param"] == {"n": 1}


def test_apps_show_their_rules_under_the_clients_slurm_names():
    info = S.AppInfo(id="hello", name="Hello", supported_hpc=["slurm"], default_hpc="slurm",
                     param_rules={"n": S.ParamRule(type="integer", max=5)},
                     slurm_input_rules={"cpus": S.SlurmRule(min=1, max=2, default_value=1),
                                        "time": S.SlurmRule(max=30)})
    app = SimpleNamespace(manifest={}, source="/srv/apps/hello")
    entry = V.git_entry(info, app)
    assert entry["slurm_input_rules"]["cpu_per_task"]["max"] == 2
    assert entry["slurm_input_rules"]["time"]["unit"] == "Minutes"
    assert entry["repository"] is None  # a path on the server is not shown
    assert entry["estimated_runtime"] == "unknown" and entry["param_rules"]["n"]["max"] == 5
    git = SimpleNamespace(manifest={"estimated_runtime": "5 min"},
                          source="https://github.com/x/y.git")
    assert V.git_entry(info, git)["repository"] == "https://github.com/x/y.git"


def test_the_result_listing_starts_at_the_root():
    entries = [S.ResultEntry(path="result", size=0, is_dir=True),
               S.ResultEntry(path="result/a.txt", size=3, is_dir=False)]
    assert V.result_paths(entries) == ["/", "/result", "/result/a.txt"]
