"""The pure decisions of interactive sessions (maintainer/sessions.py): what to do with a
session in each state, the reading of the untrusted session file, and the batch script a
session becomes (every value quoted, the service bounded by its time limit)."""
from __future__ import annotations

import datetime as dt
import subprocess
from types import SimpleNamespace

import pytest

from hpcbridge.connectors.layout import WorkDir
from hpcbridge.connectors.spec import render_batch_script
from hpcbridge.connectors.state import JobState
from hpcbridge.maintainer import sessions as M
from hpcbridge.manifest import ManifestError

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
CONF = SimpleNamespace(start_timeout=60, queue_timeout=600, idle_timeout=300,
                       charge_period=30)


def ago(seconds):
    return NOW - dt.timedelta(seconds=seconds)


def session(**fields):
    base = dict(id="a" * 32, status="starting", stop_requested=False, message=None,
                scheduler_id="42", created_at=ago(10), charged_until=None, running_at=None,
                last_activity_at=ago(10))
    return SimpleNamespace(**{**base, **fields})


def state(status, raw="", reason=None):
    return JobState("42", status, raw or status.upper(), None, reason)


RUN, PEND = state("running", "RUNNING"), state("submitted", "PENDING")


@pytest.mark.parametrize("record, job, action, event, cancel", [
    # starting
    (session(scheduler_id=None), None, M.SUBMIT, None, False),
    (session(), PEND, M.WAIT, None, False),
    (session(charged_until=ago(5)), RUN, M.CHECK, None, False),
    (session(created_at=ago(601)), PEND, M.STOP, "start_failed", True),  # no room
    (session(created_at=ago(900), charged_until=ago(30)), RUN, M.CHECK, None, False),
    (session(charged_until=ago(61)), RUN, M.STOP, "start_failed", True),  # never listens
    (session(), state("failed", "FAILED", "exit code 1"), M.STOP, "start_failed", False),
    # running
    (session(status="running", charged_until=ago(5)), RUN, M.WAIT, None, False),
    (session(status="running", charged_until=ago(31)), RUN, M.CHARGE, None, False),
    (session(status="running", last_activity_at=ago(301)), RUN, M.STOP, "idle", True),
    (session(status="running"), state("failed", "TIMEOUT"), M.STOP, "ended", False),
    (session(status="running"), state("cancelled", "CANCELLED by 0"), M.STOP, "ended",
     False),
    # a stop request wins over everything; an ended job needs no cancel
    (session(status="stopping", stop_requested=True), RUN, M.STOP, "stopped", True),
    (session(status="stopping", stop_requested=True, scheduler_id=None), None, M.STOP,
     "stopped", True),
    (session(status="stopping", stop_requested=True), state("cancelled"), M.STOP,
     "stopped", False),
])
def test_decide(record, job, action, event, cancel):
    decision = M.decide(record, job, NOW, CONF)
    assert decision.action == action
    if event:
        assert (decision.event, decision.cancel) == (event, cancel)
        assert decision.message


def test_messages_say_why():
    assert "time limit" in M.ended_message(state("failed", "TIMEOUT"))
    assert "no room" in M.decide(session(created_at=ago(601)), PEND, NOW, CONF).message
    assert "did not listen within 60 s" in M.decide(session(charged_until=ago(61)), RUN,
                                                    NOW, CONF).message
    assert "301 s without activity" in M.decide(
        session(status="running", last_activity_at=ago(301)), RUN, NOW, CONF).message


@pytest.mark.parametrize("data", [
    b"", b"[]", b"not json", b'{"node": "n"}', b'{"node": "n", "port": 0}',
    b'{"node": "n", "port": 70000}', b'{"node": "n", "port": true}',
    b'{"node": "n", "port": "80"}', b'{"node": "-x", "port": 80}',
    b'{"node": "a b", "port": 80}', b'{"node": "a;rm -rf", "port": 80}',
    b'{"node": 5, "port": 80}', b"\xff\xfe",
])
def test_an_untrusted_session_file_is_refused(data):
    with pytest.raises(ValueError):
        M.parse_session_file(data)


def test_a_session_file_gives_node_and_port():
    assert M.parse_session_file(b'{"node": "cn-01.cluster", "port": 8888}\n') == \
        ("cn-01.cluster", 8888)


def app(kind="service", command="python3 webecho.py"):
    manifest = {"name": "x", "kind": kind, "execution_stage": command,
                "supported_hpc": ["slurm"]}
    return SimpleNamespace(manifest=manifest, path="/nowhere")


def spec_of(record, the_app):
    hpc = SimpleNamespace(default_partition="debug")
    return M.build_session_spec(record, the_app, WorkDir("/home/u/hpcbridge/alice/s1"), hpc)


def test_the_batch_script_of_a_session():
    record = session(user="alice", app="webecho", params={"listen": True}, resources={},
                     time_limit_seconds=1200, base_url="/p/sessions/x/proxy/",
                     secret="t0k'en $(x)")
    spec = spec_of(record, app())
    assert spec.name == f"hpcbridge-session-{record.id}" and spec.time_minutes == 20
    assert spec.environment["HPCBRIDGE_SESSION_TOKEN"] == "t0k'en $(x)"
    assert spec.environment["HPCBRIDGE_BASE_URL"] == "/p/sessions/x/proxy/"
    assert spec.environment["param_listen"] == "true"
    script = render_batch_script(spec)
    assert "timeout 1200 bash -c 'python3 webecho.py'" in script
    assert "export HPCBRIDGE_SESSION_TOKEN='t0k'\"'\"'en $(x)'" in script
    syntax = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert syntax.returncode == 0, syntax.stderr


def test_only_service_apps_become_sessions():
    record = session(user="alice", app="hello", params={}, resources={},
                     time_limit_seconds=600, base_url="/", secret="s")
    with pytest.raises(ManifestError, match="not a service app"):
        spec_of(record, app(kind="batch"))
    with pytest.raises(ManifestError, match="no longer registered"):
        spec_of(record, None)
