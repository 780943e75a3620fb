"""Counting what the services send over SSH during a benchmark, from inside their processes
(a sitecustomize hook while HPCBRIDGE_BENCH_COUNTS is set), and the CPU their process trees
use: the measuring half of bench/submit.py."""
from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COUNTS_ENV = "HPCBRIDGE_BENCH_COUNTS"  # "<redis url> <hash key>": the hook is on

# --- the hook, run inside the middleware and maintainer processes --------------------------
def install_counter(redis_url: str, key: str) -> None:
    """Count every SSH command (exec or SFTP channel) and SFTP request of this process
    into Redis hash `key` (flushed by a thread every 0.2 s, never on the io loop), as
    "poll:<program>" inside a poll cycle, "task:<program>" otherwise."""
    import asyncssh.sftp
    import redis

    from hpcbridge.connectors import transport
    from hpcbridge.maintainer import stats

    counts: Counter = Counter()
    lock = threading.Lock()

    def kind() -> str:
        return "poll" if stats._CYCLE.get() is not None else "task"
    record = transport.CommandCounter.record

    def counted_record(self, argv):
        record(self, argv)
        with lock:
            counts[f"{kind()}:{argv[0]}"] += 1
    make_request = asyncssh.sftp.SFTPClientHandler._make_request

    async def counted_request(self, pkttype, *args):
        with lock:
            counts[f"{kind()}:sftp_request"] += 1
        return await make_request(self, pkttype, *args)
    transport.CommandCounter.record = counted_record
    asyncssh.sftp.SFTPClientHandler._make_request = counted_request
    r = redis.Redis.from_url(redis_url)

    def flush() -> None:
        while True:
            time.sleep(0.2)
            with lock:
                batch, _ = dict(counts), counts.clear()
            try:
                for name, n in batch.items():
                    r.hincrby(key, name, n)
            except Exception:  # Redis away: counted again next time
                with lock:
                    counts.update(batch)
    threading.Thread(target=flush, daemon=True, name="bench-counter").start()


# installed at interpreter start (sitecustomize) in every process the services start,
# the maintainer's spawned workers included, while COUNTS_ENV is set
HOOK = f"""
import os as _os, sys as _sys
if _os.environ.get({COUNTS_ENV!r}):
    _sys.path.insert(0, {str(REPO / 'bench')!r})
    import counting as _bench
    _bench.install_counter(*_os.environ[{COUNTS_ENV!r}].split())
"""


def hook_environment(tmp: str, redis_url: str, key: str) -> None:
    """The environment the services inherit: the counting hook on."""
    folder = os.path.join(tmp, "hook")
    os.makedirs(folder, exist_ok=True)
    Path(folder, "sitecustomize.py").write_text(HOOK)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (folder, os.environ.get("PYTHONPATH")) if p)
    os.environ[COUNTS_ENV] = f"{redis_url} {key}"


# --- the parent --------------------------------------------------------------------------
def cpu_seconds(svc) -> dict[str, float]:
    """CPU seconds used so far by each service's process tree (the maintainer's workers
    included): what a phase costs, less sensitive than wall time to a busy machine."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    out = {}
    for name, proc in svc.procs.items():
        tree = {proc.pid}
        for _ in range(3):  # the pool, its workers, what they run
            tree |= {pid for pid, (ppid, _) in stats.items() if ppid in tree}
        out[name] = round(sum(stats[pid][1] for pid in tree if pid in stats), 2)
    return out


def cpu_window(before: dict, after: dict) -> dict:
    return {f"cpu_{name}": round(after[name] - before.get(name, 0.0), 2) for name in after}


def counts(red, key: str) -> Counter:  # the hook's counts so far
    return Counter({k.decode(): int(v) for k, v in red.hgetall(key).items()})


def ssh_commands(c: Counter, kind: str) -> int:
    return sum(n for k, n in c.items() if k.startswith(kind + ":") and
               not k.endswith(":sftp_request"))


def window(before: Counter, after: Counter) -> dict:
    d = after - before
    return {"commands": ssh_commands(d, "task") + ssh_commands(d, "poll"),
            "task_commands": ssh_commands(d, "task"),
            "poll_commands": ssh_commands(d, "poll"),
            "sftp_requests": d["task:sftp_request"] + d["poll:sftp_request"],
            "by_program": {k: v for k, v in sorted(d.items())}}
