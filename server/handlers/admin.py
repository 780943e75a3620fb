"""Admin routes: everybody's jobs, cancel any job, quotas, drain/resume, workers."""
from __future__ import annotations

from hpcbridge import schemas as S
from hpcbridge.clock import aware, utcnow

from .. import errors as E
from .base import APIHandler, job_info
from .jobs import JobCancelHandler
from .meta import hpc_list


def routes(p: str, jid: str) -> list[tuple]:
    """The admin routes under the API prefix p; jid matches a job id."""
    return [
        (rf"{p}/admin/jobs", AdminJobsHandler),
        (rf"{p}/admin/jobs/{jid}/cancel", AdminCancelHandler),
        (rf"{p}/admin/users/(?P<name>[^/]+)/quota", AdminQuotaHandler),
        (rf"{p}/admin/hpcs/(?P<hpc_id>[^/]+)/(?P<action>drain|resume)", AdminDrainHandler),
        (rf"{p}/admin/workers", AdminWorkersHandler),
    ]


class AdminJobsHandler(APIHandler):
    def get(self):
        self.require_admin()
        jobs, total = self.ctx.store.list_jobs(
            user=self.get_query_argument("user", None), status=self.status_filter(),
            limit=self.int_arg("limit", 50, 1, 1000), offset=self.int_arg("offset", 0))
        self.send(S.JobList(jobs=[job_info(j) for j in jobs], total=total))


class AdminCancelHandler(JobCancelHandler):
    admin_route = True


class AdminQuotaHandler(APIHandler):
    def put(self, name):
        self.require_admin()
        data = self.body(S.QuotaUpdate)
        quota = self.ctx.store.set_quota(name, data.limit_seconds)
        self.send(S.Quota(limit_seconds=quota.limit_seconds, used_seconds=quota.used_seconds))


class AdminDrainHandler(APIHandler):
    def post(self, hpc_id, action):
        self.require_admin()
        if hpc_id not in self.ctx.hpcs:
            raise E.NotFound(f"no HPC {hpc_id}")
        self.ctx.store.set_hpc_state(hpc_id, draining=(action == "drain"))
        self.send(hpc_list(self.ctx))  # answer with the HPC list


class AdminWorkersHandler(APIHandler):
    def get(self):
        self.require_admin()
        now = utcnow()
        self.send([S.WorkerInfo(id=w.id, host=w.host, pid=w.pid, started_at=aware(w.started_at),
                                heartbeat_at=aware(w.heartbeat_at),
                                alive=w.alive(self.ctx.site.worker_timeout, now),
                                leases=w.leases or [])
                   for w in self.ctx.store.workers()])
