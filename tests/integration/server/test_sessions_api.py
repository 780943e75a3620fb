"""Interactive sessions end to end (issue #22) on the stack's Slurm: a real middleware and
maintainer (tests/services.py), the bundled `webecho` service app, hub tokens.

One scenario covers the lifecycle: a session starts and runs; HTTP and a WebSocket go
through the proxy (SSH port forwarding over the pool); bob sees neither the session nor
its proxy; the middleware restarted while it runs still reaches it and no time is lost; a
service that never listens ends `stopped` with the reason; the idle timeout stops the
session (Slurm job gone, time charged); a spent quota refuses a start with 409.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import time

import httpx
import psutil
import pytest
from services import Services, new_pg_database, remove_remote, slurm_hpc, wait_for_sshd
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

pytestmark = [pytest.mark.stack, pytest.mark.slow]

START_TIMEOUT = 15
IDLE_TIMEOUT = 12
SETTINGS = f"""
c.SessionSettings.start_timeout = {START_TIMEOUT}
c.SessionSettings.queue_timeout = 240
c.SessionSettings.idle_timeout = {IDLE_TIMEOUT}
c.SessionSettings.charge_period = 2
c.SessionSettings.activity_write_seconds = 1
c.SessionSettings.default_quota_seconds = 3600
"""


@pytest.fixture(scope="module")
def svc(stack, hub, tmp_path_factory):
    wait_for_sshd(stack)
    tmp = tmp_path_factory.mktemp("sessions")
    with new_pg_database(stack, "hpcbridge_sessions") as db_url:
        # PostgreSQL, as a site with several machines runs it
        services = Services(str(tmp), stack, extra_config=SETTINGS +
                            f"c.Site.db_url = {db_url!r}\n")
        services.hpcs = [slurm_hpc(stack, services.run_id)]
        services.start()
        try:
            yield services
        finally:
            stop_all(services, stack, hub)


def stop_all(services, stack, hub) -> None:
    admin = services.client(hub["tokens"]["admin"])
    try:
        names = [f"hpcbridge-session-{s['id']}" for s in admin.get("sessions?all=1").json()]
    except (httpx.HTTPError, ValueError):
        names = []
    services.stop()
    for name in names:  # nothing of this test may hold the cluster's CPUs afterwards
        on_login_node(stack, "scancel", "-u", stack["ssh"]["user"], f"--name={name}")
    remove_remote(stack, f"hpcbridge-it/{services.run_id}")


def wait_status(http: httpx.Client, sid: str, statuses, timeout: float, svc) -> dict:
    deadline = time.monotonic() + timeout
    info = {}
    while time.monotonic() < deadline:
        info = http.get(f"sessions/{sid}").json()
        if info.get("status") in statuses:
            return info
        time.sleep(0.5)
    raise AssertionError(f"session {sid} still {info.get('status')} after {timeout} s; "
                         f"events: {json.dumps(http.get(f'sessions/{sid}/events').json())}"
                         f"\nmaintainer log:\n{svc.log('maintainer')}")


def on_login_node(stack: dict, *argv: str) -> str:
    ssh = stack["ssh"]
    out = subprocess.run(
        ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", f"UserKnownHostsFile={ssh['known_hosts']}", "-i", ssh["key"], "-p",
         str(ssh["port"]), f"{ssh['user']}@{ssh['host']}", *argv],
        capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def squeue_state(stack: dict, scheduler_id: str) -> str:
    return on_login_node(stack, "squeue", "-h", "-j", scheduler_id, "-o", "%T")


async def ws_echo(url: str, token: str, messages: list[str]) -> list[str]:
    request = HTTPRequest(url, headers={"Authorization": f"token {token}"},
                          connect_timeout=10, request_timeout=10)
    conn = await asyncio.wait_for(websocket_connect(request), 15)
    answers = []
    for message in messages:
        await conn.write_message(message)
        answers.append(await asyncio.wait_for(conn.read_message(), 10))
    conn.close()
    return answers


def check_proxy(svc, alice: httpx.Client, info: dict, token: str) -> None:
    url = svc.url + info["url"]
    assert info["url"].endswith("/") and info["url"].startswith("/api/v1/sessions/")
    page = alice.get(url + "?x=1")
    assert page.status_code == 200, page.text
    assert page.json()["app"] == "webecho" and page.json()["query"] == "x=1"
    echo = alice.post(url + "echo", content=b"ping" * 1000,
                      headers={"Content-Type": "text/plain"})
    assert echo.status_code == 200 and echo.content == b"ping" * 1000
    ws = url.replace("http://", "ws://") + "ws"
    assert asyncio.run(ws_echo(ws, token, ["hello", "x" * 70000])) == ["hello", "x" * 70000]


def test_session_lifecycle(svc, stack, hub):
    alice, bob, admin = (svc.client(hub["tokens"][who]) for who in ("alice", "bob", "admin"))
    made = alice.post("sessions", json={"app": "webecho", "hpc": "slurm"})
    assert made.status_code == 201, made.text
    sid = made.json()["id"]
    mute = alice.post("sessions", json={"app": "webecho", "hpc": "slurm",
                                        "params": {"listen": False}}).json()
    gone = alice.post("sessions", json={"app": "webecho", "hpc": "slurm"}).json()
    assert alice.post("sessions", json={"app": "hello", "hpc": "slurm"}).status_code == 422

    info = wait_status(alice, sid, ("running", "stopped"), 240, svc)
    assert info["status"] == "running", alice.get(f"sessions/{sid}/events").text
    check_proxy(svc, alice, info, hub["tokens"]["alice"])
    assert 1 <= ssh_connections(svc) <= 2  # the pool's connections carry every tunnel
    now = alice.get(f"sessions/{sid}").json()
    assert now["last_activity_at"] > now["running_at"]  # the proxy's traffic is activity
    assert alice.post(f"sessions/{sid}/keepalive").status_code == 204
    # the owner stops one: stopping at once, then stopped by the maintainer
    stopping = alice.delete(f"sessions/{gone['id']}")
    assert stopping.status_code == 202 and stopping.json()["status"] == "stopping"
    # bob: neither the session nor its proxy exists for him; the admin sees both
    assert bob.get(f"sessions/{sid}").status_code == 404
    assert bob.get(svc.url + info["url"]).status_code == 404
    assert bob.delete(f"sessions/{sid}").status_code == 404
    assert bob.post(f"sessions/{sid}/keepalive").status_code == 404
    assert sid not in {s["id"] for s in bob.get("sessions").json()}
    assert admin.get(svc.url + info["url"]).status_code == 200

    # the middleware restarts: the session is still reachable and its time still counts
    before = alice.get(f"sessions/{sid}").json()["charged_seconds"]
    svc.stop("server")
    time.sleep(3)
    svc._spawn("server", "server")
    svc.wait_health()
    check_proxy(svc, alice, alice.get(f"sessions/{sid}").json(), hub["tokens"]["alice"])
    time.sleep(3)
    assert alice.get(f"sessions/{sid}").json()["charged_seconds"] > before + 2

    gone = wait_status(alice, gone["id"], ("stopped",), 60, svc)
    assert gone["message"] == "stopped by its owner", gone

    # the service that never listens: stopped with the reason, its job cancelled
    mute = wait_status(alice, mute["id"], ("stopped",), 240, svc)
    events = alice.get(f"sessions/{mute['id']}/events").json()
    assert events[-1]["type"] == "start_failed" and "did not listen" in events[-1]["message"]

    # idle: no traffic for IDLE_TIMEOUT → stopped, job gone, time charged
    info = wait_status(alice, sid, ("stopped",), IDLE_TIMEOUT + 30, svc)
    events = alice.get(f"sessions/{sid}/events").json()
    assert [e["type"] for e in events][-1] == "idle", events
    scheduler_id = [e for e in events if e["type"] == "submitted"][0]["message"].split()[-1]
    assert squeue_state(stack, scheduler_id) in ("", "COMPLETING")
    # no time lost, the middleware's restart included: charged from the job's start on
    ran = _time(info["stopped_at"]) - _time(info["running_at"])
    assert ran - 1 <= info["charged_seconds"] <= _time(info["stopped_at"]) - _time(
        info["created_at"]), (ran, info)
    quota = alice.get("sessions/quota").json()
    assert quota["used_seconds"] >= info["charged_seconds"]
    assert alice.get(svc.url + info["url"]).status_code == 409

    # the quota spent: a start is refused with 409 and how much is used
    assert admin.put("admin/users/alice/session-quota",
                     json={"limit_seconds": 1}).status_code == 200
    refused = alice.post("sessions", json={"app": "webecho", "hpc": "slurm"})
    assert refused.status_code == 409 and "used" in refused.json()["message"], refused.text
    assert refused.json()["error"] == "session_quota_exceeded"
    assert bob.put("admin/users/alice/session-quota", json={"limit_seconds": 9}
                   ).status_code == 403


def ssh_connections(svc) -> int:
    """The middleware's TCP connections to the login node's sshd."""
    port = svc.stack["ssh"]["port"]
    conns = psutil.Process(svc.procs["server"].pid).net_connections(kind="tcp")
    return sum(1 for c in conns if c.raddr and c.raddr.port == port
               and c.status == psutil.CONN_ESTABLISHED)


def _time(text: str) -> float:
    import datetime as dt
    return dt.datetime.fromisoformat(text).timestamp()
