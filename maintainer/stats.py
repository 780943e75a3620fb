"""Per-cycle statistics of the poller: what each cycle cost, in Redis for operators, tests
and benchmarks.

    <prefix>:stats:<hpc>          hash of totals: cycles, watched_cycles, jobs_watched,
                                  seconds, commands:<program>
    <prefix>:stats:<hpc>:cycles   the last Maintainer.stats_keep cycles, newest first,
                                  one JSON object each

and the same cycles in Prometheus (maintainer/metrics.py observe_cycle).
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator

from .metrics import observe_cycle

log = logging.getLogger("hpcbridge.maintainer")

# The remote commands of the running poll cycle. Set in the poller thread for the length of
# a cycle; `Runtime.run` hands coroutines to the io loop with a copy of the calling thread's
# context, so only commands sent on behalf of the cycle are counted — never those of rq
# tasks that share the same SSH pool from the worker's main thread.
_CYCLE: contextvars.ContextVar[Counter | None] = contextvars.ContextVar(
    "hpcbridge_poll_cycle", default=None)


def count_command(argv) -> None:
    """A transport command hook: counts the command against the running cycle, if any."""
    counter = _CYCLE.get()
    if counter is not None:
        counter[argv[0]] += 1


def count_commands_of(handlers) -> None:
    """Hook `count_command` into every handler's transport (once)."""
    for handler in handlers:
        hooks = handler.transport.commands.hooks
        if count_command not in hooks:
            hooks.append(count_command)


@contextlib.contextmanager
def measured(rt, hpc_id: str) -> Iterator[dict]:
    """`with measured(rt, hpc.id) as stats:` — a cycle's record, filled in by the cycle and
    completed (time, duration, commands) and stored when it ends, even by an exception."""
    commands: Counter = Counter()
    stats = {"worker": rt.worker_id, "jobs": 0, "watched": 0, "status_calls": 0, "tailed": 0}
    token = _CYCLE.set(commands)
    started, wall = time.monotonic(), time.time()
    failed = True
    try:
        yield stats
        failed = False
    finally:
        _CYCLE.reset(token)
        stats.update(t=wall, seconds=round(time.monotonic() - started, 4),
                     commands=dict(commands))
        try:
            record(rt, hpc_id, stats)
        except Exception:  # statistics never break polling
            log.debug("could not record poll statistics", exc_info=True)
        try:
            observe_cycle(hpc_id, stats, failed)
        except Exception:
            log.debug("could not observe the poll cycle", exc_info=True)


def record(rt, hpc_id: str, stats: dict) -> None:
    """Add one cycle's record to the HPC's totals and recent cycles."""
    key = rt.key("stats", hpc_id)
    pipe = rt.redis.pipeline(transaction=False)
    pipe.hincrby(key, "cycles", 1)
    if stats["watched"]:
        pipe.hincrby(key, "watched_cycles", 1)
        pipe.hincrby(key, "jobs_watched", stats["watched"])
    pipe.hincrbyfloat(key, "seconds", stats["seconds"])
    for program, n in stats["commands"].items():
        pipe.hincrby(key, f"commands:{program}", n)
    pipe.hset(key, "last", json.dumps(stats))
    pipe.lpush(f"{key}:cycles", json.dumps(stats))
    pipe.ltrim(f"{key}:cycles", 0, rt.tuning.stats_keep - 1)
    pipe.execute()
