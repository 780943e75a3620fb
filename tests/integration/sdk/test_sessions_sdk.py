"""Interactive sessions from the SDK and the CLI (issue #22) against a real middleware and
maintainer on the stack's Slurm, with the bundled `webecho` service app and hub tokens.

One scenario: start (the URL is absolute and answers once running), keepalive, listing,
the CLI's list/status/stop, a start that fails (its reason raised by wait_ready), the stop
reaching `stopped` with time charged, and the errors a user meets (batch app, another
user's session, unknown id)."""
from __future__ import annotations

import contextlib
import io
import json
import time

import httpx
import pytest
from services import Services, remove_remote, slurm_hpc, wait_for_sshd

from hpcbridge.cli.main import main
from hpcbridge.client import Client
from hpcbridge.client_sessions import SessionStopped, absolute_url
from hpcbridge.errors import NotFound, ValidationError

pytestmark = [pytest.mark.stack, pytest.mark.slow]

SETTINGS = """
c.SessionSettings.start_timeout = 15
c.SessionSettings.queue_timeout = 240
c.SessionSettings.charge_period = 2
c.SessionSettings.default_quota_seconds = 3600
"""


@pytest.fixture(scope="module")
def svc(stack, hub, tmp_path_factory):
    wait_for_sshd(stack)
    services = Services(str(tmp_path_factory.mktemp("sessions-sdk")), stack,
                        extra_config=SETTINGS)
    services.hpcs = [slurm_hpc(stack, services.run_id)]
    services.start()
    yield services
    with Client(services.url, hub["tokens"]["alice"]) as alice:  # free the cluster's CPUs
        for session in alice.sessions():
            if session.status in ("starting", "running"):
                session.stop()
    services.stop()
    remove_remote(stack, f"hpcbridge-it/{services.run_id}")


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_absolute_url_keeps_a_prefix_before_the_api():
    assert absolute_url("http://h:1/api/v1", "/api/v1/sessions/a/proxy/") == \
        "http://h:1/api/v1/sessions/a/proxy/"
    assert absolute_url("https://h/services/hpc/api/v1", "/api/v1/sessions/a/proxy/") == \
        "https://h/services/hpc/api/v1/sessions/a/proxy/"
    assert absolute_url("http://h/api/v1", "/user/x/hpcbridge/api/sessions/a/proxy/") == \
        "http://h/user/x/hpcbridge/api/sessions/a/proxy/"


def test_session_from_the_sdk_and_the_cli(svc, hub):
    token = hub["tokens"]["alice"]
    alice, bob = Client(svc.url, token), Client(svc.url, hub["tokens"]["bob"])
    auth = ("--url", svc.url, "--token", token)

    session = alice.start_session("webecho", hpc="slurm", resources={"time": 5})
    assert session.status == "starting"
    assert session.url == f"{svc.api}/sessions/{session.id}/proxy/"
    mute = alice.start_session("webecho", hpc="slurm", params={"listen": False})

    assert session.wait_ready(timeout=240, progress=False) is session
    assert session.ready and session.time_limit_seconds == 300
    page = httpx.get(session.url, params={"q": "1"}, timeout=30,
                     headers={"Authorization": f"token {token}"})
    assert page.status_code == 200 and page.json()["app"] == "webecho", page.text
    session.keepalive()
    assert session.id in {s.id for s in alice.sessions()}
    assert [e.type for e in session.events()][0]
    assert "running" in repr(session) and session.url in session._repr_html_()

    code, out, _ = cli("session", "list", "--json", *auth)
    listed = {s["id"]: s for s in json.loads(out)}
    assert code == 0 and listed[session.id]["url"] == session.url
    code, out, _ = cli("session", "status", session.id, *auth)
    assert code == 0 and "running" in out and session.url in out

    # a service that never listens: wait_ready says why it stopped
    with pytest.raises(SessionStopped, match="listen"):
        mute.wait_ready(timeout=120, progress=False)

    # what a user may get wrong
    with pytest.raises(ValidationError, match="batch app"):
        alice.start_session("hello", hpc="slurm")
    with pytest.raises(NotFound):
        bob.session(session.id)
    code, _, err = cli("session", "stop", "0" * 32, *auth)
    assert code == 2 and "no session" in err

    code, out, _ = cli("session", "stop", session.id, *auth)
    assert code == 0 and session.id in out and ("stopping" in out or "stopped" in out)
    deadline = time.monotonic() + 60
    while session.refresh().status != "stopped":
        assert time.monotonic() < deadline, session.events()
        time.sleep(0.5)
    assert session.charged_seconds > 0
    quota = alice.session_quota()
    assert quota.limit_seconds == 3600 and quota.used_seconds >= session.charged_seconds
    code, out, _ = cli("session", "quota", *auth)
    assert code == 0 and "of 1.00 h" in out
    alice.close()
    bob.close()
