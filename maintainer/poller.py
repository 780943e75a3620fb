"""One poller per HPC across all workers (a Redis lease): each cycle covers every active
job of the HPC with one status_many call, tails logs, sends cancels, offers queued jobs to
the pool and, now and then, reconciles what a dead worker left behind.

Each HPC is polled in a thread of its own, and every wait of a cycle on the HPC is bounded
by the cycle's deadline (Maintainer.cycle_deadline_seconds): a hung, slow or unreachable
HPC delays no other. While a cycle waits, its lease is renewed, so a slow cycle never lets
a second poller onto the same HPC; a lease that cannot be renewed (taken over, Redis gone)
ends the cycle at once."""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
import time
from collections import Counter

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout

from hpcbridge import joblog
from hpcbridge.clock import utcnow
from hpcbridge.connectors.errors import ConnectorError, HPCUnavailable, RemoteTimeout
from hpcbridge.lifecycle import IN_SCHEDULER, JobStatus

from . import cancel as cancels
from .admission import next_to_admit
from .decisions import (
    NAMELESS,
    OURS,
    WATCHED,
    held_message,
    on_scheduler_state,
    record_verdict,
)
from .jobspec import scheduler_name
from .logs import due_for_tail, tail_logs
from .reconcile import move_on, reconcile, resolve_unseen
from .runtime import Runtime
from .sessions import watch_sessions
from .stats import count_commands_of, measured
from .tasks import hpc_unavailable
from .throttle import Throttle

log = logging.getLogger("hpcbridge.maintainer")
S = JobStatus

PROBE_NAME = "hpcbridge-probe"  # no job is ever named so (job names end in a job id)
HELD_TOLD_EVERY_SECONDS = 3600.0  # a job the scheduler holds: its "held" event, at most
REDIS_DOWN = (RedisConnectionError, RedisTimeout)
RENEW = """if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"""


class LeaseLost(Exception):
    """This worker no longer holds the HPC's lease (taken over, or Redis is gone)."""


class CycleRuntime:
    """The Runtime as one cycle sees it: `run` waits no longer than the cycle's deadline
    (the coroutine is cancelled then) and renews the HPC's lease while it waits."""

    def __init__(self, rt: Runtime, poller: Poller, hpc, deadline: float):
        self._rt, self._poller, self._hpc, self.deadline = rt, poller, hpc, deadline
        # a cycle run outside the lease loop (a test, a benchmark) has no lease to keep
        self.leased = hpc.id in poller.leases

    def __getattr__(self, name):
        return getattr(self._rt, name)

    def run(self, coro, timeout: float | None = None):
        fut = asyncio.run_coroutine_threadsafe(coro, self._rt.loop)
        end = self.deadline if timeout is None else min(self.deadline,
                                                        time.monotonic() + timeout)
        try:
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    raise RemoteTimeout(f"{self._hpc.id}: the poll cycle passed its "
                                        f"deadline ({self._poller.cycle_deadline(self._hpc):g} s)")
                try:
                    return fut.result(min(left, self._poller.renew_every(self._hpc)))
                except concurrent.futures.TimeoutError:
                    if fut.done():  # the coroutine's own TimeoutError
                        raise
                    self.keep()
        finally:
            if not fut.done():
                fut.cancel()

    def keep(self) -> None:
        if self.leased:
            self._poller.keep(self._hpc)


class Poller:
    def __init__(self, runtime: Runtime, stop: threading.Event):
        self.rt = runtime
        self.tuning = runtime.tuning
        self.stop = stop
        self.leases: set[str] = set()
        self.cycles: Counter[str] = Counter()
        self.last_stats: dict | None = None
        self._renewed: dict[str, float] = {}
        self._renew = runtime.redis.register_script(RENEW)
        self._offered = Throttle(self.tuning.resend_seconds, self.tuning.resend_memory)
        self._cancel_sent = Throttle(self.tuning.cancel_resend_seconds,
                                     self.tuning.resend_memory)
        self._looked_up = Throttle(self.tuning.lost_after_seconds, self.tuning.resend_memory)
        self._held_told = Throttle(HELD_TOLD_EVERY_SECONDS, self.tuning.resend_memory)
        # HPC → job id → since when its record was not its own, and since when it has
        # been nameless (each HPC's thread its own)
        self._unseen: dict[str, dict[str, float]] = {h: {} for h in runtime.hpcs}
        self._nameless: dict[str, dict[str, float]] = {h: {} for h in runtime.hpcs}
        self._probed: dict[str, float] = {}
        count_commands_of(runtime.handlers.values())

    # --- leases ---------------------------------------------------------------------
    def _lease_ms(self, hpc) -> int:
        seconds = max(self.tuning.lease_min_seconds,
                      self.tuning.lease_poll_intervals * hpc.poll_interval)
        return int(seconds * 1000)

    def renew_every(self, hpc) -> float:
        return self._lease_ms(hpc) / 3000

    def cycle_deadline(self, hpc) -> float:
        return self.tuning.cycle_deadline_seconds

    def hold(self, hpc) -> bool:
        """Take or renew the lease of one HPC; True if this worker polls it."""
        key = self.rt.key("lease", hpc.id)
        ms = self._lease_ms(hpc)
        if hpc.id in self.leases and self._renew(keys=[key], args=[self.rt.worker_id, ms]):
            self._renewed[hpc.id] = time.monotonic()
            return True
        self.leases.discard(hpc.id)
        if self.rt.redis.set(key, self.rt.worker_id, nx=True, px=ms):
            self.leases.add(hpc.id)
            self._renewed[hpc.id] = time.monotonic()
            log.info("%s polls %s", self.rt.worker_id, hpc.id)
            reconcile(self.rt, hpc, self.offer)
            return True
        return False

    def keep(self, hpc) -> None:
        """Renew the lease mid-cycle when due; LeaseLost when it is no longer ours."""
        if hpc.id not in self.leases:
            raise LeaseLost(hpc.id)
        if time.monotonic() - self._renewed.get(hpc.id, 0.0) < self.renew_every(hpc):
            return
        try:
            ok = self._renew(keys=[self.rt.key("lease", hpc.id)],
                             args=[self.rt.worker_id, self._lease_ms(hpc)])
        except Exception as exc:  # Redis gone: stop polling this HPC, safely
            self.leases.discard(hpc.id)
            raise LeaseLost(f"{hpc.id}: {exc}") from exc
        if not ok:
            self.leases.discard(hpc.id)
            raise LeaseLost(f"{hpc.id}: taken over")
        self._renewed[hpc.id] = time.monotonic()

    def release(self) -> None:
        for hpc_id in list(self.leases):
            key = self.rt.key("lease", hpc_id)
            try:
                if self.rt.redis.get(key) == self.rt.worker_id.encode():
                    self.rt.redis.delete(key)
            except Exception:  # Redis gone: the lease expires by itself
                log.warning("could not release the lease of %s", hpc_id)
        self.leases.clear()

    # --- the loops ------------------------------------------------------------------
    def run(self) -> None:
        """One thread per HPC, until `stop`; then the leases are released."""
        threads = [threading.Thread(target=self.run_hpc, args=(hpc,), daemon=True,
                                    name=f"hpcbridge-poller-{hpc.id}")
                   for hpc in self.rt.hpcs.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.release()

    def run_hpc(self, hpc) -> None:
        jitter = self.tuning.poll_jitter
        while not self.stop.is_set():
            due = time.monotonic() + hpc.poll_interval * random.uniform(1 - jitter,
                                                                         1 + jitter)
            try:
                if self.hold(hpc):
                    self.cycle(hpc)
            except REDIS_DOWN as exc:  # no lease without Redis: wait for it, quietly
                self.leases.discard(hpc.id)
                log.warning("poller of %s waits for Redis: %s", hpc.id, exc)
            except Exception:  # a bad cycle never kills the poller
                log.exception("poll cycle of %s failed", hpc.id)
            self.stop.wait(max(0.0, due - time.monotonic()))

    def cycle(self, hpc) -> None:
        """One poll of one HPC; what it cost is recorded (maintainer/stats.py)."""
        with measured(self.rt, hpc.id) as stats:
            self.last_stats = stats
            run = CycleRuntime(self.rt, self, hpc, time.monotonic() + self.cycle_deadline(hpc))
            try:
                self._cycle(run, hpc, stats)
            except LeaseLost as exc:
                stats["lease_lost"] = True
                log.warning("%s lost the lease of %s mid-cycle: %s", self.rt.worker_id,
                            hpc.id, exc)

    def _cycle(self, run: CycleRuntime, hpc, stats: dict) -> None:
        store = self.rt.store
        self.cycles[hpc.id] += 1
        jobs = store.active_jobs(hpc.id)
        stats["jobs"] = len(jobs)
        try:
            cancels.honour_requests(run, jobs, self._cancel_sent)
            moved = self._watch(run, hpc, jobs, stats)
            back = self._probe(run, hpc, bool(stats["watched"]))
        except HPCUnavailable as exc:
            stats["unreachable"] = True
            self._unreachable(hpc, jobs, exc)
            return
        except ConnectorError as exc:
            log.warning("poll of %s: %s", hpc.id, exc)
            moved, back = {}, False
        run.keep()
        self._admit(hpc, jobs, moved, force=back)
        if self.cycles[hpc.id] % self.tuning.reconcile_every_cycles == 0:
            reconcile(run, hpc, self.offer)
        watch_sessions(run, hpc)

    def _probe(self, run: CycleRuntime, hpc, answered: bool) -> bool:
        """Is the HPC reachable? Known from this cycle's status call; else, while it is
        marked unreachable, its scheduler is asked (a lookup of a name no job has: sshd and
        the controller must both answer, or jobs sent to it would fail again at once), and
        when idle, one cheap command every Maintainer.idle_probe_seconds. True when it has
        just come back."""
        state = self.rt.store.hpc_state(hpc.id)
        now = time.monotonic()
        if not answered and state.reachable is True and \
                now - self._probed.get(hpc.id, 0.0) < self.tuning.idle_probe_seconds:
            return False
        if not answered:
            self._probed[hpc.id] = now
            handler = self.rt.handlers[hpc.id]
            run.run(handler.transport.resolve_work_root())
            if state.reachable is not False:  # not known yet, or idle
                run.run(handler.transport.run(["true"]))
            else:
                run.run(handler.find_by_name(PROBE_NAME))
        if state.reachable is not True:
            self.rt.store.set_hpc_state(hpc.id, reachable=True, message=None,
                                        checked_at=utcnow())
            log.info("%s is reachable again", hpc.id)
            return True
        return False

    def _watch(self, run: CycleRuntime, hpc, jobs, stats: dict) -> dict[str, str]:
        """One status_many for the jobs in the scheduler, their moves, their log tails;
        job id → the status this cycle moved the job to."""
        watched = [j for j in jobs if j.status in WATCHED and j.scheduler_id]
        stats["watched"] = len(watched)
        if not watched:
            return {}
        handler = self.rt.handlers[hpc.id]
        stats["status_calls"] += 1
        states = run.run(handler.status_many([j.scheduler_id for j in watched]))
        ids = {j.id for j in watched}
        unseen = self._unseen[hpc.id]
        for job_id in [i for i in unseen if i not in ids]:  # ended or moved on otherwise
            del unseen[job_id]
            self._nameless[hpc.id].pop(job_id, None)
        moved: dict[str, str] = {}
        for job in watched:
            status = self._apply(run, hpc, job, states.get(job.scheduler_id), stats)
            if status:
                moved[job.id] = status
        run.keep()
        now = utcnow()
        # only the jobs this cycle moved need reading again
        running = [self.rt.store.get_job(j.id) if j.id in moved else j for j in watched]
        tail = [j for j in running if j is not None and j.status == S.RUNNING
                and due_for_tail(j, now, self.tuning)]
        if tail:
            stats["tailed"] = len(tail)
            tail_logs(run, handler, tail)
        return moved

    @joblog.scoped
    def _apply(self, run, hpc, job, state, stats: dict) -> str | None:
        """Act on the scheduler's answer for one job — only if the record is the job's
        (decisions.record_verdict); the status it was moved to, if any."""
        joblog.bind(job)
        verdict = record_verdict(state, scheduler_name(job))
        if verdict != OURS:
            return self._unseen_job(run, hpc, job, verdict, state, stats)
        self._unseen[hpc.id].pop(job.id, None)
        self._nameless[hpc.id].pop(job.id, None)
        decision = on_scheduler_state(job.status, state, hpc.scheduler)
        if decision.status is None:
            held = held_message(state, hpc.scheduler)
            if held and self._held_told.due(job.id):  # said again at most hourly
                self.rt.store.add_event(job.id, "waiting", held, touch=False)
            return None
        return move_on(self.rt, hpc, job, decision, self.offer)

    def _unseen_job(self, run, hpc, job, verdict: str, state, stats: dict) -> str | None:
        """A job whose record is missing, not final yet, or another job's: looked up by
        name (reconcile.resolve_unseen) at once for a reused id, after
        Maintainer.lost_after_seconds otherwise, at most Maintainer.lookups_per_cycle a
        cycle and once per lost_after_seconds a job. The time counts from the first cycle
        whose record was not the job's, whatever the verdicts since (they may alternate
        while accounting catches up); a nameless record's own time, from the first of an
        unbroken run of nameless answers."""
        now = time.monotonic()
        first = self._unseen[hpc.id].setdefault(job.id, now)
        unseen = now - first
        nameless = self._nameless[hpc.id]
        if verdict == NAMELESS:
            nameless_for = now - nameless.setdefault(job.id, now)
        else:
            nameless.pop(job.id, None)
            nameless_for = 0.0
        if verdict != "reused" and unseen < self.tuning.lost_after_seconds:
            return None
        if stats.get("lookups", 0) >= self.tuning.lookups_per_cycle or \
                not self._looked_up.due(job.id):
            return None
        stats["lookups"] = stats.get("lookups", 0) + 1
        try:
            status = resolve_unseen(run, hpc, job, unseen, self.offer, state, nameless_for)
        except HPCUnavailable:
            self._looked_up.forget(job.id)  # unknown: ask again next cycle
            raise
        if status is not None:
            self._unseen[hpc.id].pop(job.id, None)
            nameless.pop(job.id, None)
        return status

    def _admit(self, hpc, jobs, moved: dict[str, str], force: bool = False) -> None:
        """Offer the pool the queued jobs the HPC has room for, in fair order (`force`: at
        once, as when the HPC has just come back). Worked out from the jobs this cycle
        already read; the task decides again under the admission lock."""
        if self.rt.store.hpc_state(hpc.id).draining:
            return
        status = {j.id: moved.get(j.id, j.status) for j in jobs}
        in_scheduler = [j for j in jobs if status[j.id] in IN_SCHEDULER]
        queued = [j for j in jobs if status[j.id] == S.QUEUED]  # oldest first
        if getattr(self.rt.handlers[hpc.id], "supports_arrays", False):
            # a sweep goes whole, as one array: one element offered stands for all
            heads = {}
            for job in queued:
                if job.sweep_id:
                    heads.setdefault(job.sweep_id, job)
            queued = [j for j in queued if not j.sweep_id]
            if len(in_scheduler) < hpc.capacity:
                for job in heads.values():
                    self.offer(job.id, hpc.id, force=force)
        # one task takes a batch and asks for the next (maintainer/batch.py): the head
        # stands for the rest, so a long queue costs one task a cycle, not one per job
        for job in next_to_admit(hpc, queued, in_scheduler, most=1):
            self.offer(job.id, hpc.id, force=force)

    def offer(self, job_id: str, hpc_id: str, force: bool = False) -> None:
        """Hand a job to the pool, at most once per Maintainer.resend_seconds unless forced."""
        if self._offered.due(job_id, force):
            self.rt.enqueue_advance(job_id, hpc_id)

    def _unreachable(self, hpc, jobs, exc) -> None:
        """An unreachable HPC is its condition, not the jobs': they wait, with an event."""
        message = f"waiting for {hpc.id}: {exc}"
        was = self.rt.store.hpc_state(hpc.id)
        hpc_unavailable(self.rt, hpc.id, exc)
        if was.reachable is not False:
            log.warning(message)
            for job in jobs:
                self.rt.store.add_event(job.id, "waiting", message)
