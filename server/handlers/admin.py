"""Admin routes: everybody's jobs, cancel or requeue any job, quotas, drain/resume, workers,
HPC health, stuck jobs and usage per user (issue #25). Every route needs a hub admin."""
from __future__ import annotations

import datetime as dt
import json
import logging

from tornado.ioloop import IOLoop

from hpcbridge import schemas as S
from hpcbridge import schemas_admin as A
from hpcbridge.clock import aware, utcnow
from hpcbridge.joblog import job_fields
from hpcbridge.lifecycle import ACTIVE

from .. import errors as E
from ..storeadmin import REQUEUEABLE
from .base import APIHandler, job_info
from .jobs import JobCancelHandler
from .meta import hpc_list

log = logging.getLogger("hpcbridge.server")
COMMAND_WINDOW_SECONDS = 60.0  # commands/min is counted over the cycles of this window


def routes(p: str, jid: str) -> list[tuple]:
    """The admin routes under the API prefix p; jid matches a job id."""
    return [
        (rf"{p}/admin/jobs", AdminJobsHandler),
        (rf"{p}/admin/jobs/{jid}/cancel", AdminCancelHandler),
        (rf"{p}/admin/jobs/{jid}/requeue", AdminRequeueHandler),
        (rf"{p}/admin/users/(?P<name>[^/]+)/quota", AdminQuotaHandler),
        (rf"{p}/admin/users", AdminUsersHandler),
        (rf"{p}/admin/hpcs", AdminHPCsHandler),
        (rf"{p}/admin/hpcs/(?P<hpc_id>[^/]+)/(?P<action>drain|resume)", AdminDrainHandler),
        (rf"{p}/admin/workers", AdminWorkersHandler),
        (rf"{p}/admin/stuck", AdminStuckHandler),
    ]


class AdminHandler(APIHandler):
    async def prepare(self):
        await super().prepare()
        if self.request.method in self.allowed_methods():  # else: the 405 says which are
            self.require_admin()

    def key(self, *parts: str) -> str:
        """A Redis key of the maintainer's (maintainer/runtime.Runtime.key)."""
        return ":".join((self.ctx.site.queue_prefix, *parts))

    async def in_thread(self, fn, *args):
        """Redis calls off the event loop: a hung Redis costs its deadline, not the server."""
        return await IOLoop.current().run_in_executor(None, fn, *args)

    def alive_workers(self) -> set[str]:
        now = utcnow()
        return {w.id for w in self.ctx.store.workers()
                if w.alive(self.ctx.site.worker_timeout, now)}


class AdminJobsHandler(AdminHandler):
    def get(self):
        jobs, total = self.ctx.store.list_jobs(
            user=self.get_query_argument("user", None), status=self.status_filter(),
            limit=self.int_arg("limit", 50, 1, 1000), offset=self.int_arg("offset", 0))
        self.send(S.JobList(jobs=[job_info(j) for j in jobs], total=total))


class AdminCancelHandler(JobCancelHandler):
    admin_route = True


class AdminQuotaHandler(AdminHandler):
    def put(self, name):
        data = self.body(S.QuotaUpdate)
        quota = self.ctx.store.set_quota(name, data.limit_seconds)
        self.send(S.Quota(limit_seconds=quota.limit_seconds, used_seconds=quota.used_seconds))


class AdminDrainHandler(AdminHandler):
    def post(self, hpc_id, action):
        if hpc_id not in self.ctx.hpcs:
            raise E.NotFound(f"no HPC {hpc_id}")
        self.ctx.store.set_hpc_state(hpc_id, draining=(action == "drain"))
        self.send(hpc_list(self.ctx))  # answer with the HPC list


class AdminWorkersHandler(AdminHandler):
    async def get(self):
        try:
            claims = await self.in_thread(self.claims_by_worker)
        except Exception as exc:  # Redis down: the heartbeats are still known
            log.warning("workers: claims unknown (Redis: %s)", exc)
            claims = None
        now = utcnow()
        self.send([A.WorkerHealth(
            id=w.id, host=w.host, pid=w.pid, started_at=aware(w.started_at),
            heartbeat_at=aware(w.heartbeat_at), alive=w.alive(self.ctx.site.worker_timeout, now),
            leases=w.leases or [], claims=None if claims is None else sorted(claims.get(w.id, [])))
            for w in self.ctx.store.workers()])

    def claims_by_worker(self) -> dict[str, list[str]]:
        """worker id → the job ids it holds a claim on (maintainer/claims.py keys)."""
        redis, prefix = self.ctx.queue.redis, self.key("claim", "")
        keys = list(redis.scan_iter(match=prefix + "*", count=1000))
        out: dict[str, list[str]] = {}
        for key, holder in zip(keys, redis.mget(keys) if keys else []):
            if holder is not None:
                out.setdefault(holder.decode(), []).append(key.decode()[len(prefix):])
        return out


class AdminUsersHandler(AdminHandler):
    def get(self):
        records = self.ctx.store.usage(self.ctx.site.default_quota_seconds)
        self.send([A.UserUsage(
            user=u.user, jobs=u.jobs, charged_seconds=u.charged_seconds,
            active_jobs=sum(n for status, n in u.jobs.items() if status in ACTIVE),
            quota=S.Quota(limit_seconds=u.quota.limit_seconds,
                          used_seconds=u.quota.used_seconds)) for u in records])


class AdminHPCsHandler(AdminHandler):
    async def get(self):
        infos = hpc_list(self.ctx)
        try:
            stats = await self.in_thread(self.read_stats, [h.id for h in infos])
            error = None
        except Exception as exc:  # Redis down: the store's half of the answer still holds
            stats, error = {}, f"poll statistics unavailable (Redis): {exc}"
        self.send([self.health(info, *stats.get(info.id, ({}, [])), error) for info in infos])

    def read_stats(self, hpc_ids: list[str]) -> dict[str, tuple[dict, list]]:
        """hpc → (totals hash, recent cycles newest first) from maintainer/stats.py."""
        pipe = self.ctx.queue.redis.pipeline(transaction=False)
        for hpc_id in hpc_ids:
            pipe.hgetall(self.key("stats", hpc_id))
            pipe.lrange(self.key("stats", hpc_id, "cycles"), 0, -1)
        answers = pipe.execute()
        return {hpc_id: ({k.decode(): v.decode() for k, v in answers[2 * i].items()},
                         [json.loads(c) for c in answers[2 * i + 1]])
                for i, hpc_id in enumerate(hpc_ids)}

    def health(self, info: S.HPCInfo, totals: dict, cycles: list,
               error: str | None) -> A.HPCHealth:
        last = json.loads(totals["last"]) if "last" in totals else (cycles[0] if cycles else {})
        count = int(totals.get("cycles", 0))
        since = utcnow().timestamp() - COMMAND_WINDOW_SECONDS
        recent = sum(sum(c.get("commands", {}).values()) for c in cycles if c.get("t", 0) >= since)
        state = self.ctx.store.hpc_state(info.id)
        return A.HPCHealth(
            hpc=info, checked_at=aware(state.checked_at), cycles=count,
            last_cycle=A.CycleInfo(
                at=dt.datetime.fromtimestamp(last["t"], dt.timezone.utc) if "t" in last else None,
                seconds=last.get("seconds"), worker=last.get("worker"),
                unreachable=bool(last.get("unreachable")),
                mean_seconds=round(float(totals["seconds"]) / count, 4) if count else None),
            commands_per_minute=recent,
            commands_cap=self.ctx.hpcs[info.id].commands_per_minute,
            commands={k.split(":", 1)[1]: int(v) for k, v in totals.items()
                      if k.startswith("commands:")},
            last_error=state.message if state.reachable is False else None,
            stats_error=error)


class AdminStuckHandler(AdminHandler):
    async def get(self):
        older_than = self.int_arg("older_than", A.DEFAULT_STUCK_SECONDS, 0, 10**9)
        records = self.ctx.store.stuck_jobs(older_than, hpc=self.get_query_argument("hpc", None),
                                            limit=self.int_arg("limit", 100, 1, 1000))
        try:
            holders = await self.in_thread(self.claim_holders, [r.job.id for r in records])
        except Exception as exc:  # without Redis the claims are unknown, not the jobs
            log.warning("stuck jobs: claims unknown (Redis: %s)", exc)
            holders = {}
        alive, now = self.alive_workers(), utcnow()
        self.send([A.StuckJob(
            job=job_info(r.job), status_since=r.status_since,
            stuck_seconds=round((now - r.status_since).total_seconds(), 1),
            last_event=A.EventBrief(time=aware(r.last_event.time), type=r.last_event.type,
                                    message=r.last_event.message) if r.last_event else None,
            claimed_by=holders.get(r.job.id),
            claim_holder_alive=(holders[r.job.id] in alive) if r.job.id in holders else None)
            for r in records])

    def claim_holders(self, job_ids: list[str]) -> dict[str, str]:
        if not job_ids:
            return {}
        values = self.ctx.queue.redis.mget([self.key("claim", j) for j in job_ids])
        return {j: v.decode() for j, v in zip(job_ids, values) if v is not None}


class AdminRequeueHandler(AdminHandler):
    """Offer a job stuck in staging or finishing to the workers again. Its status is kept
    and no claim is touched: the worker that takes the task claims the job as always
    (maintainer/claims.py), so a worker still holding it is never raced. A claim held by a
    live worker is refused here (409): that worker is still at it."""

    async def post(self, job_id):
        job = self.own_job(job_id, admin_view=True)
        if job.status not in REQUEUEABLE:
            raise E.Conflict(f"job {job_id} is {job.status}: only a job in staging or "
                             "finishing can be requeued (cancel it instead)")
        try:
            holder = await self.in_thread(self.ctx.queue.redis.get, self.key("claim", job.id))
        except Exception as exc:
            raise E.Unavailable(f"the job queue (Redis) cannot be reached: {exc}") from None
        holder = holder.decode() if holder else None
        if holder and holder in self.alive_workers():
            raise E.Conflict(f"job {job_id} is held by worker {holder}, which is alive: "
                             "it is still working on it")
        job = self.ctx.store.mark_requeued(job.id, self.user.name)
        if job is None:
            raise E.Conflict(f"job {job_id} moved on meanwhile")
        log.info("job requeued by the admin %s", self.user.name, extra=job_fields(job))
        sent = await self.in_thread(self.ctx.queue.advance, job.id, job.hpc)
        message = "offered to the workers again" if sent else \
            "recorded; the queue could not be reached: the maintainer's reconciliation offers it"
        if holder:
            message += f" (its claim by the dead worker {holder} passes on)"
        self.send(A.RequeueResult(job=job_info(job), requeued=sent, message=message), 202)
