"""One poller per HPC across all workers (a Redis lease): each cycle covers every active
job of the HPC with one status_many call, tails logs, sends cancels, admits queued jobs
and re-examines jobs a dead worker left behind."""
from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import random
import threading
import time
from collections import Counter

from hpcbridge.connectors.errors import ConnectorError, HPCUnavailable
from hpcbridge.lifecycle import IN_SCHEDULER
from hpcbridge.server.models import utcnow

from . import lifecycle as L
from .logs import due_for_tail, tail_logs
from .runtime import Runtime

log = logging.getLogger("hpcbridge.maintainer")

RENEW = """if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"""
CANCEL_RESEND = 60.0  # seconds before a cancel is sent again
STATS_KEEP = 1000  # per-cycle records kept under <prefix>:stats:<hpc>:cycles

# The remote commands of the running poll cycle. Set in the poller thread for the length of
# a cycle; `Runtime.run` hands coroutines to the io loop with a copy of the calling thread's
# context, so only commands sent on behalf of the cycle are counted — never those of rq
# tasks that share the same SSH pool from the worker's main thread.
_CYCLE: contextvars.ContextVar[Counter | None] = contextvars.ContextVar(
    "hpcbridge_poll_cycle", default=None)


def _count_command(argv) -> None:
    counter = _CYCLE.get()
    if counter is not None:
        counter[argv[0]] += 1


class Poller:
    def __init__(self, runtime: Runtime, stop: threading.Event):
        self.rt = runtime
        self.stop = stop
        self.leases: set[str] = set()
        self.cycles = 0
        self._cancel_sent: dict[str, float] = {}
        self._enqueued: dict[str, float] = {}
        self._renew = runtime.redis.register_script(RENEW)
        self.last_stats: dict | None = None
        for handler in runtime.handlers.values():
            hooks = handler.transport.commands.hooks
            if _count_command not in hooks:
                hooks.append(_count_command)

    # --- leases ---------------------------------------------------------------------
    def _lease_ms(self, hpc) -> int:
        return int(max(15.0, 3 * hpc.poll_interval) * 1000)

    def hold(self, hpc) -> bool:
        """Take or renew the lease of one HPC; True if this worker polls it."""
        key = self.rt.key("lease", hpc.id)
        ms = self._lease_ms(hpc)
        if hpc.id in self.leases and self._renew(keys=[key], args=[self.rt.worker_id, ms]):
            return True
        self.leases.discard(hpc.id)
        if self.rt.redis.set(key, self.rt.worker_id, nx=True, px=ms):
            self.leases.add(hpc.id)
            log.info("%s polls %s", self.rt.worker_id, hpc.id)
            self.reconcile(hpc)
            return True
        return False

    def release(self) -> None:
        for hpc_id in list(self.leases):
            key = self.rt.key("lease", hpc_id)
            if self.rt.redis.get(key) == self.rt.worker_id.encode():
                self.rt.redis.delete(key)
        self.leases.clear()

    # --- the loop -------------------------------------------------------------------
    def run(self) -> None:
        next_due = {h: 0.0 for h in self.rt.hpcs}
        while not self.stop.is_set():
            now = time.monotonic()
            for hpc in self.rt.hpcs.values():
                if now < next_due[hpc.id]:
                    continue
                # jitter: pollers of many sites do not hit the scheduler in step
                next_due[hpc.id] = now + hpc.poll_interval * random.uniform(0.8, 1.2)
                try:
                    if self.hold(hpc):
                        self.cycle(hpc)
                except Exception:  # a bad cycle never kills the worker
                    log.exception("poll cycle of %s failed", hpc.id)
            self.stop.wait(min(0.2, min(h.poll_interval for h in self.rt.hpcs.values())))
        self.release()

    def cycle(self, hpc) -> None:
        """One poll of one HPC; what it cost is recorded (see `_record`)."""
        commands: Counter = Counter()
        stats = {"worker": self.rt.worker_id, "jobs": 0, "watched": 0, "status_calls": 0,
                 "tailed": 0}
        token = _CYCLE.set(commands)
        started, wall = time.monotonic(), time.time()
        try:
            self._cycle(hpc, stats)
        finally:
            _CYCLE.reset(token)
            stats.update(t=wall, seconds=round(time.monotonic() - started, 4),
                         commands=dict(commands))
            self.last_stats = stats
            try:
                self._record(hpc, stats)
            except Exception:  # statistics never break polling
                log.debug("could not record poll statistics", exc_info=True)

    def _cycle(self, hpc, stats: dict) -> None:
        rt, store = self.rt, self.rt.store
        handler = rt.handlers[hpc.id]
        self.cycles += 1
        jobs = store.active_jobs(hpc.id)
        stats["jobs"] = len(jobs)
        moved: dict[str, str] = {}  # job id → status this cycle moved it to
        try:
            self._cancels(hpc, jobs)
            watched = [j for j in jobs if j.status in ("submitted", "running") and j.scheduler_id]
            stats["watched"] = len(watched)
            if watched:
                stats["status_calls"] += 1
                states = rt.run(handler.status_many([j.scheduler_id for j in watched]))
                for job in watched:
                    status = self._apply(hpc, job, states.get(job.scheduler_id))
                    if status:
                        moved[job.id] = status
                now = utcnow()
                # only the jobs this cycle moved need reading again
                running = [store.get_job(j.id) if j.id in moved else j for j in watched]
                tail = [j for j in running
                        if j is not None and j.status == "running" and due_for_tail(j, now)]
                if tail:
                    stats["tailed"] = len(tail)
                    tail_logs(rt, handler, tail, rt.site.max_log_bytes_per_cycle)
            if store.hpc_state(hpc.id).reachable is not True:
                rt.run(handler.transport.resolve_work_root())
                store.set_hpc_state(hpc.id, reachable=True, message=None,
                                    checked_at=utcnow())
        except HPCUnavailable as exc:
            stats["unreachable"] = True
            self._unreachable(hpc, jobs, exc)
            return
        except ConnectorError as exc:
            log.warning("poll of %s: %s", hpc.id, exc)
        self._admit(hpc, jobs, moved)
        if self.cycles % 10 == 0:
            self.reconcile(hpc)

    def _record(self, hpc, stats: dict) -> None:
        """What each cycle cost, in Redis for operators, tests and benchmarks:
        `<prefix>:stats:<hpc>` (hash of totals: cycles, watched_cycles, jobs_watched,
        seconds, commands:<program>) and `<prefix>:stats:<hpc>:cycles` (the last
        STATS_KEEP cycles, newest first, one JSON object each)."""
        key = self.rt.key("stats", hpc.id)
        pipe = self.rt.redis.pipeline(transaction=False)
        pipe.hincrby(key, "cycles", 1)
        if stats["watched"]:
            pipe.hincrby(key, "watched_cycles", 1)
            pipe.hincrby(key, "jobs_watched", stats["watched"])
        pipe.hincrbyfloat(key, "seconds", stats["seconds"])
        for program, n in stats["commands"].items():
            pipe.hincrby(key, f"commands:{program}", n)
        pipe.hset(key, "last", json.dumps(stats))
        pipe.lpush(f"{key}:cycles", json.dumps(stats))
        pipe.ltrim(f"{key}:cycles", 0, STATS_KEEP - 1)
        pipe.execute()

    def _apply(self, hpc, job, state) -> str | None:
        """Act on the scheduler's answer for one job; the status it was moved to, if any."""
        if state is None:
            return None
        decision = L.on_scheduler_state(job.status, state, hpc.scheduler)
        if decision.status is None:
            return None
        fields = decision.fields or {}
        if decision.status == "finishing" and job.status == "submitted":
            # it ran and ended between two polls: record that it started
            self.rt.store.transition(job.id, "running", f"running on {hpc.scheduler}",
                                     expect=["submitted"])
        moved = self.rt.store.transition(job.id, decision.status, decision.message,
                                         expect=["submitted", "running"], **fields)
        if moved and decision.status == "finishing":
            self._enqueue(job.id, hpc.id, force=True)
        return decision.status if moved else None

    def _cancels(self, hpc, jobs) -> None:
        now = time.monotonic()
        for job in jobs:
            if not job.cancel_requested:
                continue
            if job.status == "queued":
                self.rt.store.transition(job.id, "cancelled",
                                         "cancelled before it reached the scheduler",
                                         expect=["queued"])
            elif job.status in ("submitted", "running") and job.scheduler_id:
                if now - self._cancel_sent.get(job.id, -1e9) > CANCEL_RESEND:
                    try:
                        self.rt.run(self.rt.handlers[hpc.id].cancel(job.scheduler_id))
                    except HPCUnavailable:
                        raise
                    except ConnectorError as exc:  # one refused scancel must not stop the
                        log.warning("cancel of %s: %s", job.id, exc)  # polling of the rest
                        self._cancel_sent[job.id] = now
                        continue
                    self._cancel_sent[job.id] = now
                    self.rt.store.add_event(job.id, "cancel_sent",
                                            f"asked {hpc.id} to cancel {job.scheduler_id}",
                                            touch=False)

    def _admit(self, hpc, jobs, moved: dict[str, str]) -> None:
        """Offer the pool the queued jobs the HPC has room for, in fair order. Worked out
        from the jobs this cycle already read (no second query over every active job); the
        task decides again under the admission lock, so a stale guess costs nothing."""
        if self.rt.store.hpc_state(hpc.id).draining:
            return
        status = {j.id: moved.get(j.id, j.status) for j in jobs}
        in_scheduler = [j for j in jobs if status[j.id] in IN_SCHEDULER]
        free = hpc.capacity - len(in_scheduler)
        if free <= 0:
            return
        queued = [j for j in jobs if status[j.id] == "queued"]  # oldest first
        for job in L.fair_pick(queued, in_scheduler, free):
            self._enqueue(job.id, hpc.id)

    def _enqueue(self, job_id: str, hpc_id: str, force: bool = False) -> None:
        """Hand a job to the pool, at most once per 30 s unless forced."""
        now = time.monotonic()
        if not force and now - self._enqueued.get(job_id, -1e9) < 30:
            return
        self._enqueued[job_id] = now
        self.rt.enqueue_advance(job_id, hpc_id)
        if len(self._enqueued) > 100000:
            self._enqueued = {k: v for k, v in self._enqueued.items() if now - v < 30}

    def _unreachable(self, hpc, jobs, exc) -> None:
        """An unreachable HPC is its condition, not the jobs': they wait, with an event."""
        message = f"waiting for {hpc.id}: {exc}"
        store = self.rt.store
        was = store.hpc_state(hpc.id)
        store.set_hpc_state(hpc.id, reachable=False, message=str(exc), checked_at=utcnow())
        if was.reachable is not False:
            log.warning(message)
            for job in jobs:
                store.add_event(job.id, "waiting", message)

    def reconcile(self, hpc) -> None:
        """Re-examine jobs left in staging/finishing by a dead worker, and queued jobs an
        rq job was lost for (Redis restarted): every non-final job gets moved on."""
        store = self.rt.store
        timeout = dt.timedelta(seconds=self.rt.site.worker_timeout)
        now = utcnow()
        alive = self.rt.alive_workers()
        for job in store.active_jobs(hpc.id, ("staging", "finishing")):
            if job.worker not in alive:
                store.add_event(job.id, "resumed",
                                f"resumed by {self.rt.worker_id} (worker {job.worker} is gone)",
                                touch=True)
                store.update_job(job.id, worker=self.rt.worker_id)
                self._enqueue(job.id, hpc.id, force=True)
            elif now - _aware(job.updated_at) > timeout * 4:  # its task died: try again
                self._enqueue(job.id, hpc.id)


def _aware(value):
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value
