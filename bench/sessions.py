"""Benchmark: interactive sessions (issue #22) on the stack's Slurm.

A real middleware and maintainer (tests/services.py, PostgreSQL store) start `--sessions`
sessions of the bundled `webecho` service app at once, then measure:

- start: seconds from `POST /sessions` to `running` (sbatch, Slurm scheduling, the service
  listening, the maintainer's next poll), per session;
- latency: `GET` of the service's page through the proxy (client → middleware → SSH
  direct-tcpip → service) against the same request sent directly to the service's port,
  and against a plain `GET /sessions/{id}` of the API (the middleware's own cost per
  request: token check, one database read), sequentially on keep-alive connections;
- SSH connections: the middleware's TCP connections to sshd while `--sockets` WebSockets
  and as many concurrent HTTP requests are open over the sessions (its pool's bound:
  HPCConfig.connections, 2 here), and echo round trips through them.

The stack's node has 8 CPUs shared with other work: more sessions than that wait in the
queue, so `--sessions` stays small and the concurrency comes from `--sockets`.

    .venv/bin/python bench/sessions.py [--sessions 4] [--sockets 20] [--requests 200]

The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import httpx
import psutil
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from conftest import read_stack_json  # noqa: E402
from services import Services, new_pg_database, slurm_hpc  # noqa: E402

SETTINGS = """
c.SessionSettings.max_per_user = 50
c.SessionSettings.default_quota_seconds = None
c.SessionSettings.idle_timeout = 600
c.SessionSettings.start_timeout = 120
"""


def start_sessions(svc, alice: httpx.Client, n: int) -> list[dict]:
    began = time.monotonic()
    made = [alice.post("sessions", json={"app": "webecho", "hpc": "slurm"}).json()
            for _ in range(n)]
    done: dict[str, dict] = {}
    while len(done) < n and time.monotonic() - began < 300:
        for s in made:
            if s["id"] not in done:
                info = alice.get(f"sessions/{s['id']}").json()
                if info["status"] in ("running", "stopped"):
                    done[s["id"]] = {**info, "seconds": time.monotonic() - began}
        time.sleep(0.2)
    if len(done) < n or any(s["status"] != "running" for s in done.values()):
        raise SystemExit(f"sessions did not all run: {list(done.values())}\n"
                         f"{svc.log('maintainer')}")
    return list(done.values())


def stop_sessions(alice: httpx.Client, timeout: float = 60) -> None:
    """Stop every session and wait for it: nothing may hold the cluster's CPUs after."""
    for s in alice.get("sessions").json():
        alice.delete(f"sessions/{s['id']}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(
            s["status"] != "stopped" for s in alice.get("sessions").json()):
        time.sleep(0.5)


def timed_gets(client: httpx.Client, url: str, headers: dict, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(url, headers=headers)
        out.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.text
    return out


def ssh_connections(pid: int, port: int) -> int:
    proc = psutil.Process(pid)
    return sum(1 for c in proc.net_connections(kind="tcp")
               if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


async def concurrent_load(svc, sessions, token: str, sockets: int, ssh_port: int) -> dict:
    headers = {"Authorization": f"token {token}"}
    conns = []
    for i in range(sockets):
        url = (svc.url + sessions[i % len(sessions)]["url"] + "ws").replace("http", "ws", 1)
        conns.append(await websocket_connect(HTTPRequest(url, headers=headers,
                                                         connect_timeout=20)))
    async with httpx.AsyncClient(timeout=60, headers=headers) as http:
        gets = [http.get(svc.url + sessions[i % len(sessions)]["url"])
                for i in range(sockets)]
        t = time.perf_counter()
        statuses = [r.status_code for r in await asyncio.gather(*gets)]
        burst = (time.perf_counter() - t) * 1000
    during = ssh_connections(svc.procs["server"].pid, ssh_port)
    t = time.perf_counter()
    for conn in conns:
        await conn.write_message("ping")
    echoed = [await conn.read_message() for conn in conns]
    echo_ms = (time.perf_counter() - t) * 1000
    for conn in conns:
        conn.close()
    return {"open_websockets": sockets, "concurrent_gets_ok": statuses.count(200),
            "concurrent_gets_ms": round(burst, 1), "echoes_ok": echoed.count("ping"),
            "echo_round_ms": round(echo_ms, 1), "middleware_ssh_connections": during}


def run(args, stack, db_url: str) -> dict:
    tmp = tempfile.mkdtemp(prefix="hpcbridge-bench-sessions-")
    svc = Services(tmp, stack, extra_config=SETTINGS + f"c.Site.db_url = {db_url!r}\n")
    svc.hpcs = [slurm_hpc(stack, svc.run_id)]
    svc.start()
    token = stack["hub"]["tokens"]["alice"]
    alice = svc.client(token)
    try:
        sessions = start_sessions(svc, alice, args.sessions)
        from hpcbridge.server.store import Store
        record = Store(db_url, create=False).get_session(sessions[0]["id"])
        with httpx.Client(timeout=30) as client:
            proxied = timed_gets(client, svc.url + sessions[0]["url"],
                                 {"Authorization": f"token {token}"}, args.requests)
            api = timed_gets(client, f"{svc.api}/sessions/{record.id}",
                             {"Authorization": f"token {token}"}, args.requests)
            direct = timed_gets(client, f"http://{record.node}:{record.port}"
                                f"{record.base_url}",
                                {"Authorization": f"token {record.secret}"}, args.requests)
        load = asyncio.run(concurrent_load(svc, sessions, token, args.sockets,
                                           stack["ssh"]["port"]))
    finally:
        stop_sessions(alice)
        svc.stop()
        if not os.environ.get("KEEP_BENCH_DIR"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept", tmp)
    starts = sorted(s["seconds"] for s in sessions)

    def ms(values):
        values = sorted(values)
        return {"p50": round(statistics.median(values), 2),
                "p95": round(values[int(0.95 * (len(values) - 1))], 2)}
    return {"sessions": args.sessions, "start_to_running_s": {
        "median": round(statistics.median(starts), 2), "max": round(starts[-1], 2)},
        "get_ms_proxied": ms(proxied), "get_ms_direct": ms(direct),
        "get_ms_api_baseline": ms(api),
        "pool_connections_configured": svc.hpcs[0].get("connections", 2), **load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--sockets", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    stack = read_stack_json()
    if not stack:
        raise SystemExit("no test stack: run `make stack` first")
    with new_pg_database(stack, "hpcbridge_bench") as db_url:
        result = run(args, stack, db_url)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
