"""Benchmark of the SSH connection pool and batched status polling, against the test stack.

    .venv/bin/python bench/ssh_pool.py [--commands 1000] [--baseline-sample 100] [--jobs 1000]

Needs the real stack (`bash stack/up.sh`); reads .stack/stack.json.

A. 1,000 short commands (`true`) through one ConnectorPool (2 connections x 8 channels),
   run concurrently and one after the other, against a naive baseline that opens a new SSH
   connection per command. The baseline is measured on a sample (default 100 commands, one
   after the other) and its per-command cost extrapolated to 1,000: 1,000 fresh logins
   would also hammer the shared login node for no information.
B. Status of 10 / 100 / 1,000 jobs: SlurmHandler.status_many (one squeue, + one sacct for
   jobs that left the queue) against one `squeue -j ID` per job through the same pool
   (concurrently, as a per-job poller would). The jobs are 1,000 `sbatch --hold` jobs
   (pending, never run), all scancel'd at the end.

Prints a table, and as its last line one JSON object with the figures and ratios.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

import asyncssh

from hpcbridge.connectors.config import HPCConfig
from hpcbridge.connectors.handlers import SlurmHandler
from hpcbridge.connectors.handlers.slurm import SQUEUE_FORMAT
from hpcbridge.connectors.pool import ConnectorPool
from hpcbridge.lifecycle import JobStatus

REPO = Path(__file__).resolve().parents[1]


def load_stack() -> dict:
    path = REPO / ".stack" / "stack.json"
    if not path.exists():
        sys.exit(f"no {path}: start the test stack with `bash stack/up.sh`")
    return json.loads(path.read_text())


def config_for(stack: dict) -> HPCConfig:
    s = stack["ssh"]
    # commands_per_minute raised: the point is to measure the pool, not the site's cap
    return HPCConfig(id="bench", host=s["host"], port=s["port"], user=s["user"],
                     key_file=s["key"], known_hosts=s["known_hosts"], connections=2,
                     channels_per_connection=8, commands_per_minute=1_000_000,
                     work_root=f"~/hpcbridge-bench/{uuid.uuid4().hex}")


async def timed(coro):
    started = time.perf_counter()
    result = await coro
    return time.perf_counter() - started, result


async def naive_command(stack: dict) -> None:
    """What a job-opens-its-own-connection design does for every command."""
    s = stack["ssh"]
    async with asyncssh.connect(s["host"], port=s["port"], username=s["user"],
                                client_keys=[s["key"]], known_hosts=s["known_hosts"]) as conn:
        result = await conn.run("true", check=False)
        assert result.exit_status == 0


async def part_a(stack, pool, n, sample):
    # warm the pool (both connections) so that what follows measures steady state
    await asyncio.gather(*(pool.run(["true"]) for _ in range(16)))
    opened = pool.connections_opened

    seq_s, _ = await timed(_sequential(pool, n))
    conc_s, results = await timed(asyncio.gather(*(pool.run(["true"]) for _ in range(n))))
    assert all(r.exit_status == 0 for r in results)
    new_connections = pool.connections_opened - opened

    naive_s, _ = await timed(_naive(stack, sample))
    naive_per = naive_s / sample
    return {
        "commands": n,
        "pool_sequential_s": seq_s,
        "pool_sequential_ms_per_command": seq_s / n * 1000,
        "pool_concurrent_s": conc_s,
        "pool_concurrent_ms_per_command": conc_s / n * 1000,
        "pool_connections_opened_during_runs": new_connections,
        "pool_connections_total": pool.connections_opened,
        "pool_channel_refusals_absorbed": pool.channel_refusals,
        "naive_sample": sample,
        "naive_sample_s": naive_s,
        "naive_ms_per_command": naive_per * 1000,
        "naive_extrapolated_s": naive_per * n,
        "naive_connections_extrapolated": n,
        "speedup_sequential": (naive_per * n) / seq_s,
        "speedup_concurrent": (naive_per * n) / conc_s,
    }


async def _sequential(pool, n):
    for _ in range(n):
        (await pool.run(["true"])).check()


async def _naive(stack, n):
    for _ in range(n):
        await naive_command(stack)


async def part_b(pool, handler, jobs, sizes, repeats=5):
    ids: list[str] = []
    try:
        sub_s, results = await timed(asyncio.gather(*(
            pool.run(["sbatch", "--hold", "--parsable", "-J", f"hpcbridge-bench-{i}",
                      "-o", "/dev/null", "--wrap", "true"]) for i in range(jobs))))
        ids = [r.check().stdout.strip().split(";")[0] for r in results]
        rows = []
        for n in sizes:
            subset = ids[:n]
            batched, per_job = [], []
            for _ in range(repeats):
                before = pool.commands.total
                t, states = await timed(handler.status_many(subset))
                batched_cmds = pool.commands.total - before
                assert len(states) == n and all(s.status == JobStatus.SUBMITTED for s in states.values())
                batched.append(t)

                before = pool.commands.total
                t, answers = await timed(asyncio.gather(*(
                    pool.run(["squeue", "-h", "-j", i, "-o", SQUEUE_FORMAT]) for i in subset)))
                per_job_cmds = pool.commands.total - before
                assert all(a.check().stdout.startswith(i) for a, i in zip(answers, subset))
                per_job.append(t)
            b, p = statistics.median(batched), statistics.median(per_job)
            rows.append({"jobs": n, "batched_ms": b * 1000, "batched_commands": batched_cmds,
                         "per_job_ms": p * 1000, "per_job_commands": per_job_cmds,
                         "speedup": p / b, "command_ratio": per_job_cmds / batched_cmds})
        return {"submitted": jobs, "submit_s": sub_s, "repeats": repeats, "rows": rows}
    finally:
        if ids:
            (await pool.run(["scancel", *ids], timeout=120)).check()


async def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--baseline-sample", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args(argv)
    sizes = [n for n in (10, 100, 1000) if n <= args.jobs]

    stack = load_stack()
    pool = ConnectorPool(config_for(stack))
    handler = SlurmHandler(pool.config, pool)
    try:
        a = await part_a(stack, pool, args.commands, args.baseline_sample)
        b = await part_b(pool, handler, args.jobs, sizes)
    finally:
        await pool.close()

    print(f"A. {a['commands']} x `true` over ssh (pool: 2 connections x 8 channels)")
    print(f"   {'':38}{'total s':>10}{'ms/cmd':>10}{'logins':>8}")
    print(f"   {'pool, one after the other':38}{a['pool_sequential_s']:>10.2f}"
          f"{a['pool_sequential_ms_per_command']:>10.2f}{a['pool_connections_total']:>8}")
    print(f"   {'pool, all at once (gather)':38}{a['pool_concurrent_s']:>10.2f}"
          f"{a['pool_concurrent_ms_per_command']:>10.2f}{'+0':>8}")
    print(f"   {'naive new connection per command *':38}{a['naive_extrapolated_s']:>10.2f}"
          f"{a['naive_ms_per_command']:>10.2f}{a['commands']:>8}")
    print(f"   * measured on {a['naive_sample']} commands one after the other "
          f"({a['naive_sample_s']:.2f} s), extrapolated to {a['commands']}")
    print(f"   speedup: x{a['speedup_sequential']:.1f} one after the other, "
          f"x{a['speedup_concurrent']:.1f} concurrent; "
          f"{a['pool_channel_refusals_absorbed']} sshd channel refusals absorbed by retry")
    print()
    print(f"B. status of held jobs ({b['submitted']} submitted with sbatch --hold in "
          f"{b['submit_s']:.1f} s; median of {b['repeats']})")
    print(f"   {'jobs':>6}{'status_many ms':>16}{'cmds':>6}{'squeue -j per job ms':>22}"
          f"{'cmds':>6}{'speedup':>9}")
    for r in b["rows"]:
        print(f"   {r['jobs']:>6}{r['batched_ms']:>16.1f}{r['batched_commands']:>6}"
              f"{r['per_job_ms']:>22.1f}{r['per_job_commands']:>6}{r['speedup']:>8.1f}x")
    print(json.dumps({"pool": {k: (round(v, 4) if isinstance(v, float) else v)
                               for k, v in a.items()},
                      "status": {**{k: v for k, v in b.items() if k != "rows"},
                                 "submit_s": round(b["submit_s"], 3),
                                 "rows": [{k: (round(v, 3) if isinstance(v, float) else v)
                                           for k, v in r.items()} for r in b["rows"]]}}))


if __name__ == "__main__":
    asyncio.run(main())
