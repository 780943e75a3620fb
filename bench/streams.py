"""Benchmark: what open event streams cost the database, pushed vs polled.

    make stack   # once
    .venv/bin/python bench/streams.py [--streams 1,10,100] [--idle 5] [--load 10] [--rate 5]

One middleware process at a time on a new database of the stack's PostgreSQL and the
stack's Redis, in two modes:

  push  the default: one Redis subscription and one query per process for each notice
        burst (server/eventbus.py), plus a fallback read every 5 s;
  poll  `c.EventBus.push = False`: every stream reads the database every
        `sse_interval` (1 s), as before.

The middleware runs in a child process that counts every SQL statement its engines send
(a SQLAlchemy `before_cursor_execute` listener on Engine) and writes the count to a file;
nothing else in that process touches the database. For each number of streams (spread
over 10 users) the figures are the statements per second while nothing happens (`idle`),
and while this process moves `rate` jobs per second to another status through a Store
with the Redis publisher, as a maintainer does (`load`: those seconds and 2 s after); and the time from each
transition's commit to its event arriving at each stream of the job's user (p50/p95),
with the share of expected (stream, event) pairs delivered in the window. The time from
Slurm to the store is the poller's cycle (HPCConfig.poll_interval) and is not measured
here. The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import httpx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from services import Services, free_port, local_hpc, new_pg_database  # noqa: E402

USERS = [f"user{i}" for i in range(10)]
TOKENS = {f"tok-{u}": u for u in USERS}


# --- the child: the middleware, its statements counted --------------------------------------
def serve(config: str, count_file: str) -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    count = [0]

    def counted(*_args):
        count[0] += 1
    event.listen(Engine, "before_cursor_execute", counted)

    def dump():
        while True:
            with open(count_file + ".tmp", "w") as f:
                f.write(str(count[0]))
            os.replace(count_file + ".tmp", count_file)
            time.sleep(0.1)
    threading.Thread(target=dump, daemon=True).start()
    from hpcbridge.server.app import HPCBridgeServer
    HPCBridgeServer.launch_instance(["--config", config])


# --- the parent ---------------------------------------------------------------------------
def statements(count_file: str) -> int:
    time.sleep(0.25)  # the child writes its count every 0.1 s
    with open(count_file) as f:
        return int(f.read())


class Streams:
    """n open streams, round robin over USERS, in one asyncio loop (a thread): the
    arrival time of each event id at each stream."""

    def __init__(self, api: str, n: int):
        self.api, self.n = api, n
        self.arrivals: list[dict[int, float]] = [{} for _ in range(n)]
        self.users = [USERS[i % len(USERS)] for i in range(n)]
        self.connected = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tasks = [asyncio.run_coroutine_threadsafe(self.read(i), self.loop)
                      for i in range(n)]

    async def read(self, i: int) -> None:
        headers = {"Authorization": f"token tok-{self.users[i]}"}
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client, \
                client.stream("GET", f"{self.api}/events/stream", headers=headers) as r:
            assert r.status_code == 200, await r.aread()
            kind = ""
            async for line in r.aiter_lines():
                if line.startswith(": connected"):
                    self.connected += 1
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("id: ") and kind == "job":
                    self.arrivals[i][int(line[4:])] = time.monotonic()

    def wait_connected(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.connected < self.n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.connected} of {self.n} streams connected")
            time.sleep(0.05)

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        time.sleep(0.3)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def write_load(store, jobs: list[tuple[str, str]], rate: float, seconds: float,
               committed: dict) -> int:
    """Move jobs queued → staging at `rate` per second; committed: event id → time (the
    Store event hook records it right after the commit)."""
    n = int(rate * seconds)
    start = time.monotonic()
    for k in range(n):
        time.sleep(max(0.0, start + k / rate - time.monotonic()))
        store.transition(jobs[k][0], "staging", "bench")
    return n


def measure(api: str, count_file: str, store, n: int, args, committed: dict) -> dict:
    jobs = [(store.create_job(user=USERS[k % len(USERS)], app="hello", hpc="local").id,
             USERS[k % len(USERS)]) for k in range(int(args.rate * args.load))]
    streams = Streams(api, n)
    try:
        streams.wait_connected()
        time.sleep(2)  # the queued events of the new jobs, and the streams' first reads
        q0, t0 = statements(count_file), time.monotonic()
        time.sleep(args.idle)
        q1, t1 = statements(count_file), time.monotonic()
        committed.clear()
        write_load(store, jobs, args.rate, args.load, committed)
        time.sleep(2)  # the last events' way to the streams (a poll is 1 s)
        q2, t2 = statements(count_file), time.monotonic()
        owner = dict(jobs)
        events = dict(committed)  # event id → (commit time, job id)
        latencies, expected = [], 0
        for i, arrivals in enumerate(streams.arrivals):
            for event_id, (at, job_id) in events.items():
                if owner.get(job_id) != streams.users[i]:
                    continue
                expected += 1
                if event_id in arrivals:
                    latencies.append(1000 * (arrivals[event_id] - at))
        latencies.sort()
        return {
            "streams": n,
            "idle_qps": round((q1 - q0) / (t1 - t0), 2),
            "load_qps": round((q2 - q1) / (t2 - t1), 2),
            "transitions": len(events),
            "latency_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
            "latency_ms_p95": round(latencies[math.ceil(0.95 * len(latencies)) - 1], 1)
            if latencies else None,
            "delivered": f"{len(latencies)}/{expected}",
        }
    finally:
        streams.close()


def run_mode(tmp: str, stack: dict, db_url: str, push: bool, args) -> list[dict]:
    svc = Services(os.path.join(tmp, "push" if push else "poll"), stack, auth="static",
                   static_tokens=TOKENS, db_url=db_url, port=free_port(),
                   extra_config=f"c.EventBus.push = {push}\n"
                   "c.HPCBridgeServer.max_streams_per_user = 100\n")
    svc.hpcs = [local_hpc(svc.data_dir)]
    svc.write_config()
    count_file = os.path.join(svc.tmp, "statements")
    with open(os.path.join(svc.tmp, "server.log"), "ab") as log:
        svc.procs["server"] = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve", svc.config_file,
             count_file], cwd=svc.tmp, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        svc.wait_health()
        store, committed = writer(stack, db_url, svc.run_id)
        try:
            return [{"mode": "push" if push else "poll",
                     **measure(svc.api, count_file, store, n, args, committed)}
                    for n in args.streams]
        finally:
            store.close()
    finally:
        os.killpg(svc.procs["server"].pid, signal.SIGTERM)
        svc.procs["server"].wait(30)


def writer(stack: dict, db_url: str, run_id: str):
    """A Store as a maintainer has it: the Redis publisher installed (and a hook noting
    each event's commit time)."""
    import redis

    from hpcbridge.server.eventbus import install_publisher
    from hpcbridge.server.store import Store
    committed: dict = {}
    Store.event_hooks[:] = []  # the previous mode's publisher named another prefix
    install_publisher(redis.Redis.from_url(stack["redis_url"]), f"hpcbridge-test-{run_id}",
                      0.5)

    def note(notice):
        now = time.monotonic()
        for event_id, job_id, _user in notice.get("events", ()):
            committed[event_id] = (now, job_id)
    Store.event_hooks.insert(0, note)  # before the publish: the time of the commit
    return Store(db_url, create=False), committed


def report(rows: list[dict]) -> None:
    print(f"{'mode':<5} {'streams':>7} {'idle q/s':>9} {'load q/s':>9} {'p50 ms':>8} "
          f"{'p95 ms':>8} {'delivered':>11}")
    for r in rows:
        print(f"{r['mode']:<5} {r['streams']:>7} {r['idle_qps']:>9} {r['load_qps']:>9} "
              f"{r['latency_ms_p50']!s:>8} {r['latency_ms_p95']!s:>8} {r['delivered']:>11}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="1,10,100", help="open streams per step")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds without events")
    parser.add_argument("--load", type=float, default=10.0, help="seconds of transitions")
    parser.add_argument("--rate", type=float, default=5.0, help="transitions per second")
    parser.add_argument("--stack", default=os.path.join(REPO, ".stack", "stack.json"))
    args = parser.parse_args(argv)
    args.streams = [int(n) for n in args.streams.split(",")]
    with open(args.stack) as f:
        stack = json.load(f)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="hpcbridge-bench-") as tmp, \
            new_pg_database(stack, "hpcbridge_bench") as db_url:
        from hpcbridge.server.store import Store
        Store(db_url).close()  # migrated once, before either middleware
        for push in (False, True):
            rows += run_mode(tmp, stack, db_url, push, args)
    report(rows)
    by = {(r["mode"], r["streams"]): r for r in rows}
    most = max(args.streams)
    figures = {
        "bench": "streams", "db": "postgresql", "rate_per_s": args.rate,
        "idle_s": args.idle, "load_s": args.load, "counted": "SQL statements sent by the "
        "middleware process (SQLAlchemy before_cursor_execute)", "rows": rows,
        f"load_qps_ratio_poll_to_push_{most}": round(
            by[("poll", most)]["load_qps"] / max(by[("push", most)]["load_qps"], 0.01), 1),
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        main()
