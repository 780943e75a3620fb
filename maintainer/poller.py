"""One poller per HPC across all workers (a Redis lease): each cycle covers every active
job of the HPC with one status_many call, tails logs, sends cancels, offers queued jobs to
the pool and, now and then, reconciles what a dead worker left behind."""
from __future__ import annotations

import logging
import random
import threading
import time

from hpcbridge.clock import utcnow
from hpcbridge.connectors.errors import ConnectorError, HPCUnavailable
from hpcbridge.lifecycle import IN_SCHEDULER, JobStatus

from . import cancel as cancels
from .admission import next_to_admit
from .decisions import WATCHED, on_scheduler_state
from .logs import due_for_tail, tail_logs
from .reconcile import reconcile
from .runtime import Runtime
from .stats import count_commands_of, measured
from .throttle import Throttle

log = logging.getLogger("hpcbridge.maintainer")
S = JobStatus

RENEW = """if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"""


class Poller:
    def __init__(self, runtime: Runtime, stop: threading.Event):
        self.rt = runtime
        self.tuning = runtime.tuning
        self.stop = stop
        self.leases: set[str] = set()
        self.cycles = 0
        self.last_stats: dict | None = None
        self._renew = runtime.redis.register_script(RENEW)
        self._offered = Throttle(self.tuning.resend_seconds, self.tuning.resend_memory)
        self._cancel_sent = Throttle(self.tuning.cancel_resend_seconds,
                                     self.tuning.resend_memory)
        count_commands_of(runtime.handlers.values())

    # --- leases ---------------------------------------------------------------------
    def _lease_ms(self, hpc) -> int:
        seconds = max(self.tuning.lease_min_seconds,
                      self.tuning.lease_poll_intervals * hpc.poll_interval)
        return int(seconds * 1000)

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
            reconcile(self.rt, hpc, self.offer)
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
        jitter = self.tuning.poll_jitter
        tick = min([self.tuning.poll_tick_seconds,
                    *(h.poll_interval for h in self.rt.hpcs.values())])
        while not self.stop.is_set():
            now = time.monotonic()
            for hpc in self.rt.hpcs.values():
                if now < next_due[hpc.id]:
                    continue
                next_due[hpc.id] = now + hpc.poll_interval * random.uniform(1 - jitter,
                                                                            1 + jitter)
                try:
                    if self.hold(hpc):
                        self.cycle(hpc)
                except Exception:  # a bad cycle never kills the worker
                    log.exception("poll cycle of %s failed", hpc.id)
            self.stop.wait(tick)
        self.release()

    def cycle(self, hpc) -> None:
        """One poll of one HPC; what it cost is recorded (maintainer/stats.py)."""
        with measured(self.rt, hpc.id) as stats:
            self.last_stats = stats
            self._cycle(hpc, stats)

    def _cycle(self, hpc, stats: dict) -> None:
        store = self.rt.store
        self.cycles += 1
        jobs = store.active_jobs(hpc.id)
        stats["jobs"] = len(jobs)
        try:
            self._cancels(jobs)
            moved = self._watch(hpc, jobs, stats)
            if store.hpc_state(hpc.id).reachable is not True:
                self.rt.run(self.rt.handlers[hpc.id].transport.resolve_work_root())
                store.set_hpc_state(hpc.id, reachable=True, message=None, checked_at=utcnow())
        except HPCUnavailable as exc:
            stats["unreachable"] = True
            self._unreachable(hpc, jobs, exc)
            return
        except ConnectorError as exc:
            log.warning("poll of %s: %s", hpc.id, exc)
            moved = {}
        self._admit(hpc, jobs, moved)
        if self.cycles % self.tuning.reconcile_every_cycles == 0:
            reconcile(self.rt, hpc, self.offer)

    def _watch(self, hpc, jobs, stats: dict) -> dict[str, str]:
        """One status_many for the jobs in the scheduler, their moves, their log tails;
        job id → the status this cycle moved the job to."""
        watched = [j for j in jobs if j.status in WATCHED and j.scheduler_id]
        stats["watched"] = len(watched)
        if not watched:
            return {}
        handler = self.rt.handlers[hpc.id]
        stats["status_calls"] += 1
        states = self.rt.run(handler.status_many([j.scheduler_id for j in watched]))
        moved: dict[str, str] = {}
        for job in watched:
            status = self._apply(hpc, job, states.get(job.scheduler_id))
            if status:
                moved[job.id] = status
        now = utcnow()
        # only the jobs this cycle moved need reading again
        running = [self.rt.store.get_job(j.id) if j.id in moved else j for j in watched]
        tail = [j for j in running if j is not None and j.status == S.RUNNING
                and due_for_tail(j, now, self.tuning)]
        if tail:
            stats["tailed"] = len(tail)
            tail_logs(self.rt, handler, tail)
        return moved

    def _apply(self, hpc, job, state) -> str | None:
        """Act on the scheduler's answer for one job; the status it was moved to, if any."""
        if state is None:
            return None
        decision = on_scheduler_state(job.status, state, hpc.scheduler)
        if decision.status is None:
            return None
        if decision.status == S.FINISHING and job.status == S.SUBMITTED:
            # it ran and ended between two polls: record that it started
            self.rt.store.transition(job.id, S.RUNNING, f"running on {hpc.scheduler}",
                                     expect=[S.SUBMITTED])
        moved = self.rt.store.transition(job.id, decision.status, decision.message,
                                         expect=WATCHED, **(decision.fields or {}))
        if moved and decision.status == S.FINISHING:
            self.offer(job.id, hpc.id, force=True)
        return decision.status if moved else None

    def _cancels(self, jobs) -> None:
        """Honour the cancel requests of queued jobs, and (re)send those of jobs in the
        scheduler's queue every Maintainer.cancel_resend_seconds. Staging and finishing jobs
        are their worker's: it looks for the request itself."""
        for job in jobs:
            if not job.cancel_requested or job.status not in (S.QUEUED, *WATCHED):
                continue
            if job.status in WATCHED and not self._cancel_sent.due(job.id):
                continue
            try:
                cancels.send(self.rt, job)
            except HPCUnavailable:
                self._cancel_sent.forget(job.id)
                raise
            except ConnectorError as exc:  # one refused scancel must not stop the polling
                log.warning("cancel of %s: %s", job.id, exc)  # of the rest

    def _admit(self, hpc, jobs, moved: dict[str, str]) -> None:
        """Offer the pool the queued jobs the HPC has room for, in fair order. Worked out
        from the jobs this cycle already read (no second query over every active job); the
        task decides again under the admission lock, so a stale guess costs nothing."""
        if self.rt.store.hpc_state(hpc.id).draining:
            return
        status = {j.id: moved.get(j.id, j.status) for j in jobs}
        in_scheduler = [j for j in jobs if status[j.id] in IN_SCHEDULER]
        queued = [j for j in jobs if status[j.id] == S.QUEUED]  # oldest first
        for job in next_to_admit(hpc, queued, in_scheduler):
            self.offer(job.id, hpc.id)

    def offer(self, job_id: str, hpc_id: str, force: bool = False) -> None:
        """Hand a job to the pool, at most once per Maintainer.resend_seconds unless forced."""
        if self._offered.due(job_id, force):
            self.rt.enqueue_advance(job_id, hpc_id)

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
