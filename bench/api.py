"""Benchmark: authenticated `GET /api/v1/jobs/{id}` per second, token cache warm vs off.

Two middleware processes run side by side against the stack's real JupyterHub — one with
the default token cache, one with `c.Authenticator.cache_enabled = False` (every request
asks the hub) — and are loaded in alternating rounds by the same keep-alive client, so both
see the same machine state. The last line printed is one JSON object with the figures.

    make stack   # once
    .venv/bin/python bench/api.py [--concurrency 16] [--duration 4] [--rounds 3]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time

import httpx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from services import Services, local_hpc  # noqa: E402


class KeepAliveClient:
    """A minimal HTTP/1.1 keep-alive GET client: the load generator must cost far less
    than the server it measures (httpx would be the bottleneck on a small machine)."""

    def __init__(self, host: str, port: int, path: str, token: str):
        self.host, self.port = host, port
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                        f"Authorization: token {token}\r\n\r\n").encode()

    async def connect(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def get(self) -> int:
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self):
        self.writer.close()


async def load(svc: Services, path: str, token: str, concurrency: int, duration: float,
               warmup: float) -> dict:
    clients = [KeepAliveClient("127.0.0.1", svc.port, path, token) for _ in range(concurrency)]
    await asyncio.gather(*(c.connect() for c in clients))
    latencies: list[float] = []
    errors = 0
    measuring = False
    stop_at = time.perf_counter() + warmup + duration

    async def worker(client):
        nonlocal errors
        while (now := time.perf_counter()) < stop_at:
            status = await client.get()
            if measuring:
                latencies.append(time.perf_counter() - now)
                errors += status != 200

    async def clock():
        nonlocal measuring
        await asyncio.sleep(warmup)  # warm: the token is cached (when the cache is on)
        measuring = True

    started = time.perf_counter()
    await asyncio.gather(clock(), *(worker(c) for c in clients))
    elapsed = time.perf_counter() - started - warmup
    for c in clients:
        c.close()
    latencies.sort()
    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
            "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else None}


def start(tmp: str, stack: dict, name: str, extra: str) -> Services:
    folder = os.path.join(tmp, name)
    os.makedirs(folder)
    svc = Services(folder, stack, auth="hub", hpcs=[local_hpc(os.path.join(folder, "data"))],
                   extra_config=extra)
    return svc.start(maintainer=False)  # the API answers from the DB: no worker needed


def make_job(svc: Services, token: str) -> str:
    with svc.client(token) as http:
        r = http.post("jobs", json={"app": "hello", "params": {"lines": 1}})
        r.raise_for_status()
        job_id = r.json()["id"]
        assert http.get(f"jobs/{job_id}").status_code == 200
        return job_id


def empty_queue(stack: dict, svc: Services) -> None:
    import redis
    from rq import Queue
    conn = redis.Redis.from_url(stack["redis_url"])
    try:
        Queue(f"hpcbridge-test-{svc.run_id}.local", connection=conn).empty()
    finally:
        conn.close()


def report(args, results: dict[str, list[dict]]) -> dict:
    """Print the table of both modes and return the figures of the JSON line."""
    summary = {}
    for mode, rounds in results.items():
        middle = sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2]  # the median round
        summary[mode] = {"rps": statistics.median(r["rps"] for r in rounds),
                         "rps_rounds": [round(r["rps"], 1) for r in rounds],
                         "p50_ms": middle["p50_ms"], "p99_ms": middle["p99_ms"],
                         "requests": sum(r["requests"] for r in rounds),
                         "errors": sum(r["errors"] for r in rounds)}
    on, off = summary["cache on"], summary["cache off"]
    ratio = on["rps"] / off["rps"] if off["rps"] else float("inf")

    print(f"GET /api/v1/jobs/{{id}} with a JupyterHub token ({args.user}), "
          f"{args.concurrency} connections, {args.rounds} x {args.duration:g} s per mode, "
          f"one middleware process each, os.cpu_count()={os.cpu_count()}")
    print(f"{'token cache':<12} {'req/s (median)':>15} {'rounds':>24} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'requests':>9} {'errors':>7}")
    for mode, s in summary.items():
        print(f"{mode:<12} {s['rps']:>15.1f} {str(s['rps_rounds']):>24} {s['p50_ms']:>8.2f} "
              f"{s['p99_ms']:>8.2f} {s['requests']:>9} {s['errors']:>7}")
    print(f"ratio cache on / off: {ratio:.1f}x")
    figures = {"benchmark": "api_get_job_auth", "concurrency": args.concurrency,
               "duration_s": args.duration, "rounds": args.rounds,
               "cache_on_rps": round(on["rps"], 1), "cache_off_rps": round(off["rps"], 1),
               "cache_on_p50_ms": round(on["p50_ms"], 2),
               "cache_off_p50_ms": round(off["p50_ms"], 2),
               "cache_on_p99_ms": round(on["p99_ms"], 2),
               "cache_off_p99_ms": round(off["p99_ms"], 2),
               "errors": on["errors"] + off["errors"], "ratio": round(ratio, 2)}
    return figures


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=16, help="open connections")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per round")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per mode")
    parser.add_argument("--stack", default=os.path.join(REPO, ".stack", "stack.json"))
    parser.add_argument("--user", default="alice")
    args = parser.parse_args(argv)

    with open(args.stack) as f:
        stack = json.load(f)
    token = stack["hub"]["tokens"][args.user]
    httpx.get(f"{stack['hub']['url']}/hub/health", timeout=10).raise_for_status()

    modes = {"cache on": "", "cache off": "c.Authenticator.cache_enabled = False"}
    results: dict[str, list[dict]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="hpcbridge-bench-") as tmp:
        servers = {m: start(tmp, stack, f"server-{i}", extra)
                   for i, (m, extra) in enumerate(modes.items())}
        try:
            paths = {m: f"/api/v1/jobs/{make_job(svc, token)}" for m, svc in servers.items()}
            for _ in range(args.rounds):
                for mode, svc in servers.items():
                    results[mode].append(asyncio.run(load(
                        svc, paths[mode], token, args.concurrency, args.duration,
                        args.warmup)))
        finally:
            for svc in servers.values():
                svc.stop()
                empty_queue(stack, svc)

    figures = report(args, results)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
