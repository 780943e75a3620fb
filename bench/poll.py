"""Benchmark of the maintainer's poll cycle against per-job polling, on the test stack.

    .venv/bin/python bench/poll.py [--sizes 10,100,1000] [--synthetic 10000] [--cycles 3]

Needs the real stack (`bash stack/up.sh`); reads .stack/stack.json.

For each size N a fresh worker process (so that its RSS is its own) holds a maintainer
Runtime (SSH pool, store, Redis) with N active jobs of one Slurm HPC in its database and:

  ours      runs the real `Poller.cycle` several times: one `squeue` for all N jobs (plus
            one `sacct` only for jobs that left the queue), then the decisions for each
            job, log tails, admission. Commands are counted by the poller itself (the
            per-cycle statistics it keeps in Redis under <prefix>:stats:<hpc>).
  baseline  polls as the system we re-imagine does: one `squeue -j ID` per job (and an
            `sacct -j ID` for each job squeue no longer lists), through the same pool, as
            concurrently as the pool allows (2 connections x 8 channels). SSH only: the
            baseline does no database work at all, which flatters it.

Real sizes (default 10, 100, 1,000): that many `sbatch --hold` jobs (pending, never run),
submitted through a ConnectorPool and all scancel'd at the end. 10,000 held jobs would
occupy the shared controller of the other suites for minutes, so the synthetic size
(default 10,000) replays a recorded `squeue` line of the real run with 10,000 job ids,
through a transport that answers like Slurm: our `squeue` waits as long as a linear fit of
the real `squeue` times over N says, and the baseline's time is its command count times
the real per-command time of the largest real run (same pool, same concurrency). Its
times are marked as modelled; its command counts, CPU time and RSS are measured.

The per-HPC command cap (HPCConfig.commands_per_minute, default 6,000) is lifted here to
measure raw cost; the report says how many baseline cycles per minute the default cap
would allow.

Prints a table, and as its last line one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SQUEUE_FORMAT = "%i|%T|%r|%M|%C|%j"
SACCT_FORMAT = "JobID,JobName,State,ExitCode,Elapsed,AllocCPUS"
DEFAULT_CAP = 6000  # HPCConfig.commands_per_minute


def hpc_config(stack: dict, run: str) -> dict:
    ssh = stack["ssh"]
    return {"id": "slurm", "scheduler": "slurm", "host": ssh["host"], "port": ssh["port"],
            "user": ssh["user"], "key_file": ssh["key"], "known_hosts": ssh["known_hosts"],
            "work_root": f"~/hpcbridge-bench/{run}",
            "partitions": [stack["slurm"]["partition"]], "capacity": 10**6,
            "poll_interval": 1.0, "commands_per_minute": 10**7, "command_timeout": 300}


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process, MB."""
    current = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    return round(current, 1), round(max(current, peak), 1)


# --- the parent: held jobs, one child per size ---------------------------------------------
async def submit_held(pool, run: str, start: int, count: int) -> list[str]:
    async def one(i):
        r = await pool.run(["sbatch", "--parsable", "--hold", "-J", f"hpcbridge-bench-{run}-{i}",
                            "-o", "/dev/null", "-t", "1", "--wrap=true"])
        if r.exit_status != 0:
            raise RuntimeError(f"sbatch failed: {r.stderr}")
        return r.stdout.strip().split(";")[0]
    return list(await asyncio.gather(*(one(i) for i in range(start, start + count))))


async def cancel_all(pool, ids: list[str]) -> None:
    for k in range(0, len(ids), 300):
        await pool.run(["scancel", *ids[k:k + 300]])


def run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                         text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def fit_line(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares a + b*n through (n, seconds) points."""
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    b = sum((p[0] - mx) * (p[1] - my) for p in points) / sxx if sxx else 0.0
    return max(0.0, my - b * mx), max(0.0, b)


def run_real(stack_path: str, cfg: dict, run: str, sizes: list[int], cycles: int,
             tmp: str) -> list[dict]:
    """One child per real size, with that many held jobs in Slurm (all cancelled after)."""
    from hpcbridge.connectors.config import HPCConfig
    from hpcbridge.connectors.pool import ConnectorPool

    loop = asyncio.new_event_loop()
    pool = ConnectorPool(HPCConfig(**cfg))
    ids: list[str] = []
    results = []
    try:
        for n in sizes:
            t0 = time.monotonic()
            ids += loop.run_until_complete(submit_held(pool, run, len(ids), n - len(ids)))
            print(f"# {n} held jobs in Slurm ({time.monotonic() - t0:.1f} s to submit)",
                  file=sys.stderr, flush=True)
            id_file = os.path.join(tmp, f"ids-{n}.json")
            Path(id_file).write_text(json.dumps(ids[:n]))
            results.append(run_child(["real", stack_path, run, str(n), str(cycles),
                                      id_file, os.path.join(tmp, "squeue.txt")]))
    finally:
        loop.run_until_complete(cancel_all(pool, ids))
        loop.run_until_complete(pool.run(["rm", "-rf", f"hpcbridge-bench/{run}"]))
        loop.run_until_complete(pool.close())
    return results


def run_synthetic(stack_path: str, run: str, real: list[dict], synthetic: list[int],
                  cycles: int, tmp: str) -> list[dict]:
    """One child per synthetic size, its command times modelled on the real runs."""
    a, b = fit_line([(r["n"], r["ours"]["squeue_seconds"]) for r in real])
    largest = max(r["n"] for r in real)
    per_command = max(r["baseline"]["seconds"] / r["baseline"]["commands"] for r in real
                      if r["n"] == largest)
    return [run_child(["synthetic", stack_path, run, str(n), str(cycles),
                       os.path.join(tmp, "squeue.txt"), repr(a), repr(b), repr(per_command)])
            for n in synthetic]


def print_table(results: list[dict]) -> None:
    print(f"{'jobs':>6} {'mode':>9} | {'ours: cmds/cycle':>16} {'cycle s':>8} {'cpu s':>6} "
          f"{'RSS MB':>7} | {'baseline: cmds':>14} {'cycle s':>8} | {'cmd ratio':>9} "
          f"{'time ratio':>10}")
    for r in results:
        o, bl = r["ours"], r["baseline"]
        print(f"{r['n']:>6} {r['mode']:>9} | {o['commands_per_cycle']:>16} "
              f"{o['cycle_seconds']:>8.3f} {o['cpu_seconds']:>6.3f} {o['rss_mb']:>7.1f} | "
              f"{bl['commands']:>14} {bl['seconds']:>8.3f} | "
              f"{bl['commands'] / max(1, o['commands_per_cycle']):>9.0f} "
              f"{bl['seconds'] / max(1e-9, o['cycle_seconds']):>10.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--synthetic", default="10000", help="sizes replayed (0: none)")
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--stack", default=str(REPO / ".stack" / "stack.json"))
    args = parser.parse_args()
    stack = json.loads(Path(args.stack).read_text())
    sizes = sorted(int(s) for s in args.sizes.split(",") if s)
    synthetic = sorted(int(s) for s in args.synthetic.split(",") if s and int(s))
    run = uuid.uuid4().hex[:8]
    tmp = tempfile.mkdtemp(prefix="hpcbridge-bench-poll-")
    started = time.monotonic()
    results = run_real(args.stack, hpc_config(stack, run), run, sizes, args.cycles, tmp)
    if synthetic and results:
        results += run_synthetic(args.stack, run, results, synthetic, args.cycles, tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    print_table(results)
    summary = {
        "benchmark": "poll",
        "runtime_seconds": round(time.monotonic() - started, 1),
        "default_commands_per_minute_cap": DEFAULT_CAP,
        "sizes": results,
    }
    print(json.dumps(summary))
    return 0


# --- the child: one worker's Runtime and Poller with N active jobs ---------------------------
def add_jobs(store, scheduler_ids: list[str]) -> None:
    """N jobs in `submitted` as the maintainer leaves them (bulk insert: a benchmark fixture;
    the maintainer itself writes only through the store's methods)."""
    from hpcbridge.clock import utcnow
    from hpcbridge.lifecycle import JobStatus
    from hpcbridge.server.models import Event, Job
    now = utcnow()
    with store.session() as s:
        for k in range(0, len(scheduler_ids), 2000):
            jobs = [Job(id=uuid.uuid4().hex, user=f"user{i % 7}", app="hello", hpc="slurm",
                        status=JobStatus.SUBMITTED.value, scheduler_id=sid, params={}, resources={},
                        created_at=now, queued_at=now, submitted_at=now, updated_at=now)
                    for i, sid in enumerate(scheduler_ids[k:k + 2000], start=k)]
            s.add_all(jobs)
            s.flush()
            s.add_all([Event(job_id=j.id, time=now, type=JobStatus.SUBMITTED.value, message="bench")
                       for j in jobs])
            s.commit()


class ReplayTransport:
    """A transport answering Slurm commands from a recorded `squeue` line, after the time
    the real commands took (for the synthetic sizes)."""

    def __init__(self, line: str, ids: list[str], a: float, b: float, per_command: float,
                 concurrency: int = 16):
        from hpcbridge.connectors.transport import CommandCounter
        self.commands = CommandCounter()
        self.work_root = "/bench"
        fields = line.strip().split("|")
        self.lines = {i: "|".join([i, *fields[1:]]) for i in ids}
        self.full = "\n".join(self.lines.values()) + "\n"
        self.a, self.b, self.per_command = a, b, per_command
        self.concurrency = concurrency
        self.sem = None

    async def resolve_work_root(self):
        return self.work_root

    async def run(self, argv, stdin=None, timeout=None):
        from hpcbridge.connectors.transport import CommandResult
        if self.sem is None:
            self.sem = asyncio.Semaphore(self.concurrency)
        self.commands.record(argv)
        async with self.sem:
            if argv[0] == "squeue" and "-j" not in argv:
                await asyncio.sleep(self.a + self.b * len(self.lines))
                out = self.full
            else:  # per-job commands are not slept through: their time is computed
                out = self.lines.get(argv[argv.index("-j") + 1], "") + "\n" \
                    if argv[0] == "squeue" else ""
        return CommandResult(tuple(argv), 0, out, "")

    async def close(self):
        pass


async def per_job_poll(transport, ids: list[str]) -> None:
    """The baseline: what a per-job poller sends each cycle."""
    async def one(i):
        r = await transport.run(["squeue", "-h", "-j", i, "-o", SQUEUE_FORMAT])
        if not r.stdout.strip():
            await transport.run(["sacct", "-X", "-n", "-P", "-j", i, f"--format={SACCT_FORMAT}"])
    await asyncio.gather(*(one(i) for i in ids))


def make_runtime(stack: dict, run: str, n: int):
    """A maintainer Runtime for the bench HPC, on a fresh data dir; (runtime, data dir)."""
    from traitlets.config import Config

    from hpcbridge.config import Site
    from hpcbridge.maintainer.runtime import Runtime

    data = tempfile.mkdtemp(prefix=f"hpcbridge-bench-{n}-")
    c = Config()
    c.Site.data_dir = data
    c.Site.redis_url = stack["redis_url"]
    c.Site.hpcs = [hpc_config(stack, run)]
    c.Site.apps = []
    c.Site.queue_prefix = f"hpcbridge-bench-{run}-{n}"
    return Runtime(Site(config=c)), data


def measure_ours(rt, poller, hpc, handler, n: int, cycles: int) -> dict:
    """The real poll cycle `cycles` times over N jobs: its commands, time, CPU and RSS."""
    squeue_seconds = []
    for _ in range(5):
        t0 = time.perf_counter()
        rt.run(handler.transport.run(["squeue", "-h", "-u", hpc.user, "-o", SQUEUE_FORMAT]))
        squeue_seconds.append(time.perf_counter() - t0)
    stats = []
    cpu0 = time.process_time()
    for _ in range(cycles):
        poller.cycle(hpc)
        stats.append(poller.last_stats)
    cpu = (time.process_time() - cpu0) / cycles
    rss, peak = rss_mb()
    assert all(s["watched"] == n for s in stats), stats
    return {
        "commands_per_cycle": max(sum(s["commands"].values()) for s in stats),
        "commands": stats[-1]["commands"],
        "cycle_seconds": round(sorted(s["seconds"] for s in stats)[len(stats) // 2], 4),
        "cpu_seconds": round(cpu, 4),
        "squeue_seconds": round(min(squeue_seconds), 4),
        "rss_mb": rss, "peak_rss_mb": peak,
    }


def measure_baseline(rt, handler, ids: list[str], cycles: int, modelled: bool) -> dict:
    """Per-job polling of the same ids through the same pool."""
    before = handler.transport.commands.total
    times = []
    for _ in range(max(1, min(cycles, 2))):
        t0 = time.perf_counter()
        rt.run(per_job_poll(handler.transport, ids))
        times.append(time.perf_counter() - t0)
    sent = (handler.transport.commands.total - before) // len(times)
    # modelled: each command as long as one took in the real run's pool
    seconds = sent * handler.transport.per_command if modelled else min(times)
    return {"commands": sent, "seconds": round(seconds, 4),
            "cycles_per_minute_under_default_cap": round(DEFAULT_CAP / max(1, sent), 2)}


def child(argv: list[str]) -> int:
    mode, stack_path, run, n, cycles = argv[:5]
    n, cycles = int(n), int(cycles)
    stack = json.loads(Path(stack_path).read_text())
    from hpcbridge.connectors.handlers import SlurmHandler
    from hpcbridge.maintainer.poller import Poller

    rt, data = make_runtime(stack, run, n)
    if mode == "real":
        ids = json.loads(Path(argv[5]).read_text())
        squeue_file = argv[6]
    else:
        squeue_file, a, b, per_command = argv[5], float(argv[6]), float(argv[7]), float(argv[8])
        ids = [str(10_000_000 + i) for i in range(n)]
        line = Path(squeue_file).read_text().splitlines()[0]
        transport = ReplayTransport(line, ids, a, b, per_command)
        rt.handlers["slurm"] = SlurmHandler(rt.hpcs["slurm"], transport)
    handler, hpc = rt.handlers["slurm"], rt.hpcs["slurm"]
    add_jobs(rt.store, ids)
    poller = Poller(rt, threading.Event())
    try:
        poller.cycle(hpc)  # warm up: connections, work root, caches
        if mode == "real":  # record one squeue answer for the synthetic sizes
            r = rt.run(handler.transport.run(["squeue", "-h", "-j", ids[0], "-o", SQUEUE_FORMAT]))
            Path(squeue_file).write_text(r.stdout)
        ours = measure_ours(rt, poller, hpc, handler, n, cycles)
        baseline = measure_baseline(rt, handler, ids, cycles, modelled=mode != "real")
        print(json.dumps({"n": n, "mode": mode, "ours": ours, "baseline": baseline,
                          "modelled_times": mode != "real"}))
    finally:
        try:
            keys = list(rt.redis.scan_iter(f"{rt.site.queue_prefix}:*"))
            if keys:
                rt.redis.delete(*keys)
        finally:
            rt.close()
            shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[2:]))
    sys.exit(main())
