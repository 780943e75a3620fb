"""Benchmark of the submit path and of sweeps as job arrays, on the test stack (issue #24).

    .venv/bin/python bench/submit.py [--jobs 1000] [--sweep 1000] [--elements 10000]

(--sweep 0 leaves (b) and (c) out, --elements 0 leaves (c) out.)

Needs the real stack (`bash stack/up.sh`); reads .stack/stack.json. One run, in order:

  baseline  as many trivial `sbatch --hold` through a ConnectorPool directly (2 x 8
            channels, concurrently; no staging, no database).
  (a) jobs  --jobs `hello` jobs POSTed (16 at a time) to a real middleware, taken to Slurm
            by a real maintainer of two workers: jobs/s from the first POST to the last
            `submitted`; SSH commands per job, staging included.
  (a') drain as many POSTed while the maintainer is stopped, then it starts: jobs/s from
            the first `staging` to the last `submitted` (the maintainer's own pace).
  (b) sweep one --sweep point sweep POSTed: seconds to the last element's `submitted`.
  (c) poll  sweeps until --elements array elements are active; the poller's own records
            (maintainer/stats.py): commands per status cycle and cycle time, measured.

Every job and array is held in Slurm (`#SBATCH --hold` in the HPC's batch prelude), so
nothing runs and the figures are the submit path's alone; all are scancel'd at the end.

What counts: an "SSH command" is one exec channel (one command line, however many sbatch
it runs) or one SFTP channel, as the pool's CommandCounter records them; the requests
inside SFTP channels (open, write, mkdir…) are counted apart as "SFTP requests". Counted
inside the services' processes by a hook (sitecustomize, while HPCBRIDGE_BENCH_COUNTS is
set), apart for the poller's cycles ("poll:") and for the tasks ("task:").

Prints a table, and as its last line one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from counting import COUNTS_ENV, counts, cpu_seconds, cpu_window, hook_environment, window  # noqa: E402  (bench/ is not a package)


async def baseline(cfg: dict, run: str, n: int) -> tuple[dict, list[str]]:
    from hpcbridge.connectors.config import HPCConfig
    from hpcbridge.connectors.pool import ConnectorPool
    pool = ConnectorPool(HPCConfig(**{**cfg, "commands_per_minute": 10**7}))
    await pool.run(["true"])  # connections up, as the maintainer's are

    async def one(i):
        r = await pool.run(["sbatch", "--parsable", "--hold", "-J", f"bench-{run}-{i}",
                            "-o", "/dev/null", "-t", "1", "--wrap=true"])
        if r.exit_status != 0:
            raise RuntimeError(f"sbatch failed: {r.stderr}")
        return r.stdout.strip().split(";")[0]
    t0 = time.monotonic()
    ids = await asyncio.gather(*(one(i) for i in range(n)))
    seconds = time.monotonic() - t0
    await pool.close()
    return {"jobs": n, "seconds": round(seconds, 3), "jobs_per_second": round(n / seconds, 1),
            "commands": n}, list(ids)


async def post_all(svc, token: str, bodies: list[tuple[str, dict]],
                   concurrency: int = 16) -> list[dict]:
    import httpx
    out: list[dict] = [None] * len(bodies)
    queue = list(enumerate(bodies))
    async with httpx.AsyncClient(base_url=svc.api, timeout=60,
                                 headers={"Authorization": f"token {token}"}) as http:
        async def worker():
            while queue:
                i, (path, body) = queue.pop(0)
                r = await http.post(path, json=body)
                if r.status_code != 201:
                    raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:300]}")
                out[i] = r.json()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


def wait_submitted(store, ids: list[str], timeout: float = 600) -> float:
    """Wait until every job of `ids` has a scheduler id; the latest submitted_at (epoch)."""
    from sqlmodel import select

    from hpcbridge.clock import aware
    from hpcbridge.server.models import Job
    deadline = time.monotonic() + timeout
    wanted = set(ids)
    while True:
        with store.session() as s:
            rows = s.exec(select(Job.id, Job.status, Job.submitted_at, Job.message)
                          .where(Job.scheduler_id.is_not(None))).all()
        done = {r[0]: r for r in rows if r[0] in wanted}
        if len(done) == len(wanted):
            return max(aware(r[2]) for r in done.values()).timestamp()
        if time.monotonic() > deadline:
            with store.session() as s:
                left = s.exec(select(Job.status, Job.message).where(
                    Job.scheduler_id.is_(None)).limit(5)).all()
            raise RuntimeError(f"{len(wanted) - len(done)} jobs not submitted: {left}")
        time.sleep(0.05)


def wait_idle(red, prefix: str, timeout: float = 180) -> None:
    """Until the workers have no task waiting (each phase starts on a quiet maintainer:
    the middleware enqueues a task per job, most of them no-ops once a batch took it)."""
    deadline = time.monotonic() + timeout
    while red.llen(f"rq:queue:{prefix}.slurm") and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)


def phase(svc, store, red, key: str, token: str, bodies: list[tuple[str, dict]],
          element_ids) -> dict:
    """POST `bodies`, wait until all their jobs are in Slurm; times and commands."""
    wait_idle(red, f"hpcbridge-test-{svc.run_id}")
    before, t0, cpu = counts(red, key), time.time(), cpu_seconds(svc)
    made = asyncio.run(post_all(svc, token, bodies))
    posted = time.time() - t0
    return {"post_seconds": round(posted, 3),
            **figures(store, red, key, element_ids(made), before, t0),
            **cpu_window(cpu, cpu_seconds(svc))}


def figures(store, red, key: str, ids: list[str], before: Counter, t0: float | None) -> dict:
    """Once `ids` are all in Slurm: seconds from t0 (None: from the first `staging`) to
    the last `submitted`, jobs/s, and the commands counted since `before`."""
    from sqlmodel import func, select

    from hpcbridge.clock import aware
    from hpcbridge.server.models import Job
    end = wait_submitted(store, ids)
    time.sleep(0.6)  # the hook's last flush
    used = window(before, counts(red, key))
    if t0 is None:
        with store.session() as s:
            t0 = aware(s.exec(select(func.min(Job.staging_at)).where(
                Job.id.in_(ids))).one()).timestamp()
    seconds = end - t0
    return {"jobs": len(ids), "seconds": round(seconds, 3),
            "jobs_per_second": round(len(ids) / seconds, 1),
            "commands_per_job": round(used["commands"] / len(ids), 4), **used}


def wait_ready(store, red, prefix: str, workers: int, timeout: float = 60) -> None:
    """Until both workers beat and one of them polls Slurm: a cold start is not measured."""
    deadline = time.monotonic() + timeout
    while len(store.workers()) < workers or not red.exists(f"{prefix}:lease:slurm"):
        if time.monotonic() > deadline:
            raise RuntimeError("the maintainer did not start")
        time.sleep(0.2)
    time.sleep(2)  # the workers' rq loops listening


def drain_phase(svc, store, red, key: str, token: str, n: int) -> dict:
    """The maintainer's own pace: n jobs POSTed while it is stopped (they wait in
    `queued`), then it is started: from the first job's `staging` to the last one's
    `submitted` (its start-up not counted)."""
    svc.stop("maintainer")
    job = ("jobs", {"app": "hello", "hpc": "slurm", "params": {"lines": 1, "delay": 0}})
    ids = [j["id"] for j in asyncio.run(post_all(svc, token, [job] * n))]
    before = counts(red, key)
    svc.start_maintainer()
    cpu = cpu_seconds(svc)  # the maintainer's start-up (imports, pools) counted too
    return {**figures(store, red, key, ids, before, None), **cpu_window(cpu, cpu_seconds(svc))}


def job_rows(store, column: str, where):
    """One column of the jobs `where(Job)` selects."""
    from sqlmodel import select

    from hpcbridge.server.models import Job
    with store.session() as s:
        return list(s.exec(select(getattr(Job, column)).where(where(Job))).all())


def sweep_elements(store, sweeps: list[dict]) -> list[str]:
    return job_rows(store, "id", lambda J: J.sweep_id.in_([w["id"] for w in sweeps]))


def sweep_body(n: int, tag: str) -> tuple[str, dict]:
    return ("sweeps", {"app": "hello", "hpc": "slurm",
                       "params": [{"name": f"{tag}{i}", "lines": 1, "delay": 0}
                                  for i in range(n)]})


def poll_cycles(red, prefix: str, active: int, cycles: int, timeout: float = 300) -> dict:
    """The poller's own records of `cycles` status cycles that watched `active` jobs."""
    key = f"{prefix}:stats:slurm:cycles"
    deadline = time.monotonic() + timeout
    while True:
        records = [json.loads(r) for r in red.lrange(key, 0, 200)]
        full = [r for r in records if r.get("watched", 0) >= active]
        if len(full) >= cycles or time.monotonic() > deadline:
            break
        time.sleep(1)
    full = full[:cycles]
    if not full:
        raise RuntimeError(f"no poll cycle watched {active} jobs")
    seconds = sorted(r["seconds"] for r in full)
    return {"cycles": len(full), "watched": full[0]["watched"],
            "commands_per_cycle": [r["commands"] for r in full],
            "squeue_per_cycle": max(r["commands"].get("squeue", 0) for r in full),
            "status_calls_per_cycle": max(r["status_calls"] for r in full),
            "cycle_seconds_median": seconds[len(seconds) // 2],
            "cycle_seconds_max": seconds[-1]}


async def clean_up(cfg: dict, ids: list[str], folder: str) -> None:
    from hpcbridge.connectors.config import HPCConfig
    from hpcbridge.connectors.pool import ConnectorPool
    pool = ConnectorPool(HPCConfig(**{**cfg, "commands_per_minute": 10**7}))
    for k in range(0, len(ids), 300):
        await pool.run(["scancel", *ids[k:k + 300]])
    await pool.run(["rm", "-rf", folder])
    await pool.close()


def scheduler_ids(store) -> list[str]:
    ids = job_rows(store, "scheduler_id", lambda J: J.scheduler_id.is_not(None))
    return sorted({i.split("_")[0] for i in ids})


def run(args, stack: dict) -> dict:
    import redis
    sys.path.insert(0, str(REPO / "tests"))
    from services import Services, slurm_hpc

    from hpcbridge.server.store import Store

    run_id = uuid.uuid4().hex[:8]
    tmp = tempfile.mkdtemp(prefix="hpcbridge-bench-submit-")
    key = f"hpcbridge-bench-submit:{run_id}"
    red = redis.Redis.from_url(stack["redis_url"])
    svc = Services(tmp, stack, auth="hub", workers=2)
    hpc = slurm_hpc(stack, svc.run_id, capacity=10**6, batch_prelude=["#SBATCH --hold"])
    svc.hpcs = [hpc]
    result: dict = {"benchmark": "submit", "workers": 2}
    base, base_ids = asyncio.run(baseline(hpc, run_id, args.jobs))
    result["baseline"] = base
    print(f"# baseline: {base}", file=sys.stderr, flush=True)
    hook_environment(tmp, stack["redis_url"], key)
    store = None
    try:
        svc.start()
        store = Store(f"sqlite:///{os.path.join(svc.data_dir, 'hpcbridge.db')}", create=False)
        wait_ready(store, red, f"hpcbridge-test-{svc.run_id}", 2)
        token = stack["hub"]["tokens"]["alice"]
        job = ("jobs", {"app": "hello", "hpc": "slurm", "params": {"lines": 1, "delay": 0}})
        result["jobs"] = phase(svc, store, red, key, token, [job] * args.jobs,
                               lambda made: [j["id"] for j in made])
        result["drain"] = drain_phase(svc, store, red, key, token, args.jobs)
        if args.sweep:  # --sweep 0: (b) and (c) left out
            result["sweep"] = phase(svc, store, red, key, token,
                                    [sweep_body(args.sweep, "s")],
                                    lambda made: sweep_elements(store, made))
        if args.sweep and args.elements:  # --elements 0: (c) left out
            more = max(0, args.elements // args.sweep - 1)
            active = 2 * args.jobs + args.sweep * (more + 1)
            filled = phase(svc, store, red, key, token,
                           [sweep_body(args.sweep, f"m{k}-") for k in range(more)],
                           lambda made: sweep_elements(store, made))
            result["poll"] = {"array_elements": args.sweep * (more + 1),
                              "jobs": 2 * args.jobs, "fill_seconds": filled["seconds"],
                              **poll_cycles(red, f"hpcbridge-test-{svc.run_id}", active,
                                            args.cycles)}
    finally:
        os.environ.pop(COUNTS_ENV, None)
        svc.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        ids = base_ids + (scheduler_ids(store) if store else [])
        asyncio.run(clean_up(hpc, ids, f"hpcbridge-it/{svc.run_id}"))
        red.delete(key)
    return result


def verdict(r: dict) -> dict:
    """Each target of issue #24 met or not (the phases run only)."""
    jobs, out = r["jobs"], {}
    out["a_jobs_per_second_ge_100"] = jobs["jobs_per_second"] >= 100
    out["a_commands_per_job_le_1.2"] = jobs["commands_per_job"] <= 1.2
    out["a_within_3x_of_baseline"] = \
        jobs["jobs_per_second"] * 3 >= r["baseline"]["jobs_per_second"]
    if "sweep" in r:
        out["b_sweep_under_3_s"] = r["sweep"]["seconds"] < 3
        out["b_sweep_under_20_commands"] = r["sweep"]["commands"] < 20
    if "poll" in r:
        out["c_one_squeue_per_cycle"] = r["poll"]["squeue_per_cycle"] == 1
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--sweep", type=int, default=1000, help="0: no (b), no (c)")
    parser.add_argument("--elements", type=int, default=10000, help="0: no (c)")
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the services' folder")
    parser.add_argument("--stack", default=str(REPO / ".stack" / "stack.json"))
    args = parser.parse_args()
    stack = json.loads(Path(args.stack).read_text())
    started = time.monotonic()
    result = run(args, stack)
    result["targets_met"] = verdict(result)
    result["runtime_seconds"] = round(time.monotonic() - started, 1)
    for name in [n for n in ("baseline", "jobs", "drain", "sweep", "poll") if n in result]:
        figures = {k: v for k, v in result[name].items() if k not in ("by_program",
                                                                      "commands_per_cycle")}
        print(f"{name:>8}: {figures}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
