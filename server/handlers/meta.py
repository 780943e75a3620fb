"""About the service and the caller: health, the OpenAPI document, me, the HPCs; and the
answer for every route that does not exist."""
from __future__ import annotations

import json

from hpcbridge import __version__
from hpcbridge import schemas as S

from .. import errors as E
from .base import APIHandler


class NotFoundHandler(APIHandler):
    auth_required = False

    def prepare(self):
        job_id = self.path_kwargs.get("job_id")
        if job_id and self.request.path.rstrip("/").endswith("/" + job_id):
            raise E.NotFound(f"no job {job_id}")
        raise E.NotFound(f"no route {self.request.path}")


class HealthHandler(APIHandler):
    auth_required = False

    def get(self):
        self.send(S.Health(status="ok", version=__version__))


class SpecHandler(APIHandler):
    auth_required = False

    def get(self):
        self.finish(json.dumps(self.ctx.openapi))


class MeHandler(APIHandler):
    def get(self):
        quota = self.ctx.store.quota(self.user.name, self.ctx.site.default_quota_seconds)
        self.send(S.Me(name=self.user.name, admin=self.user.admin, quota=S.Quota(
            limit_seconds=quota.limit_seconds, used_seconds=quota.used_seconds)))


def hpc_list(ctx) -> list[S.HPCInfo]:
    """The configured HPCs with their load, reachability and drain state."""
    out = []
    for hpc in ctx.hpcs.values():
        state = ctx.store.hpc_state(hpc.id)
        out.append(S.HPCInfo(
            id=hpc.id, name=hpc.name, scheduler=hpc.scheduler, partitions=hpc.partitions,
            capacity=hpc.capacity, active_jobs=ctx.store.count_jobs(hpc.id),
            reachable=state.reachable, draining=state.draining, message=state.message))
    return out


class HPCsHandler(APIHandler):
    def get(self):
        self.send(hpc_list(self.ctx))
