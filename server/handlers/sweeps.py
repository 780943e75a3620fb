"""Routes of parameter sweeps: one request, many element jobs (issue #24). The handlers
translate; server/sweeps.py decides what is accepted, the store records it."""
from __future__ import annotations

import hashlib
import json

from hpcbridge import schemas as S
from hpcbridge.clock import aware
from hpcbridge.lifecycle import FINAL
from hpcbridge.schemas_sweeps import SweepInfo, SweepList

from .. import errors as E
from ..submission import check_notify
from ..sweeps import SweepRequest, admit_sweep
from .base import APIHandler, job_info
from .jobs import IDEMPOTENCY_HEADER, JobsHandler

SWEEP_ID = r"(?P<sweep_id>[0-9a-f]{32})"


def sweep_info(sweep, counts: dict[str, int]) -> SweepInfo:
    finished = sum(n for status, n in counts.items() if status in FINAL)
    return SweepInfo(
        id=sweep.id, user=sweep.user, app=sweep.app, hpc=sweep.hpc, size=sweep.size,
        resources=sweep.resources or {}, throttle=sweep.throttle, upload=sweep.upload,
        scheduler_id=sweep.scheduler_id, counts=counts, finished=finished,
        progress=finished / sweep.size if sweep.size else 1.0,
        done=finished >= sweep.size, ended_at=aware(sweep.ended_at),
        created_at=aware(sweep.created_at),
        updated_at=aware(sweep.updated_at))


def fingerprint(request: SweepRequest) -> str:
    """The same request, however its JSON was spelled (key order, defaults left out)."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class SweepBase(APIHandler):
    def own_sweep(self, sweep_id: str, admin_view: bool = False):
        """The caller's sweep; someone else's does not exist for them (404). Admins see
        any through the read routes (admin_view), as they see any job."""
        user = None if (admin_view and self.user.admin) else self.user.name
        sweep = self.ctx.store.get_sweep(sweep_id, user=user)
        if sweep is None:
            raise E.NotFound(f"no sweep {sweep_id}")
        return sweep

    def send_sweep(self, sweep, status: int = 200) -> None:
        self.send(sweep_info(sweep, self.ctx.store.sweep_counts([sweep.id])[sweep.id]),
                  status)


class SweepsHandler(SweepBase):
    idempotency_key = JobsHandler.idempotency_key

    def get(self):
        store = self.ctx.store
        sweeps, total = store.list_sweeps(
            user=self.job_user_filter(), limit=self.int_arg("limit", 50, 1, 1000),
            offset=self.int_arg("offset", 0))
        counts = store.sweep_counts([s.id for s in sweeps])
        self.send(SweepList(sweeps=[sweep_info(s, counts[s.id]) for s in sweeps],
                            total=total))

    def post(self):
        ctx = self.ctx
        key = self.idempotency_key()
        request = self.body(SweepRequest)
        print_ = fingerprint(request)
        if key is not None and (found := ctx.store.sweep_by_key(self.user.name, key)):
            return self.replay(*found, key, print_)  # a retry: no second admission
        ok = admit_sweep(ctx.store, ctx.hpcs, self.user.name, request,
                         ctx.site.default_quota_seconds)
        fields = dict(app=ok.app, hpc=ok.hpc, resources=ok.resources, upload=ok.upload,
                      throttle=ok.throttle, points=ok.points,
                      notify=check_notify(request.notify, ctx.site))
        if key is None:
            sweep = ctx.store.create_sweep(self.user.name, **fields)
        else:
            sweep, first = ctx.store.create_sweep_once(self.user.name, key, print_, **fields)
            if first is not None:  # a concurrent request with the same key won the insert
                return self.replay(sweep, first, key, print_)
        # the poller offers queued jobs each cycle; waking a worker for element 0 starts
        # the sweep without waiting for it (never fails the request)
        first_job, _ = ctx.store.sweep_jobs(sweep.id, limit=1)
        if first_job:
            ctx.queue.advance(first_job[0].id, ok.hpc)
        self.set_header("Location", f"{ctx.api_prefix}sweeps/{sweep.id}")
        self.send_sweep(sweep, 201)

    def replay(self, sweep, first, key: str, print_: str) -> None:
        """The answer to a repeated key: the sweep it made, if the request is the same."""
        if first.idempotency_fingerprint != print_:
            raise E.ValidationFailed(
                f"Idempotency-Key {key!r} was already used for a different request (sweep "
                f"{sweep.id}); use a new key for a new sweep",
                [{"loc": ["header", IDEMPOTENCY_HEADER], "msg": "reused with another body"}])
        self.set_header("Location", f"{self.ctx.api_prefix}sweeps/{sweep.id}")
        self.set_header("Idempotent-Replayed", "true")
        self.send_sweep(sweep, 201)


class SweepHandler(SweepBase):
    def get(self, sweep_id):
        self.send_sweep(self.own_sweep(sweep_id, admin_view=True))


class SweepJobsHandler(SweepBase):
    def get(self, sweep_id):
        sweep = self.own_sweep(sweep_id, admin_view=True)
        jobs, total = self.ctx.store.sweep_jobs(
            sweep.id, status=self.status_filter(), limit=self.int_arg("limit", 50, 1, 1000),
            offset=self.int_arg("offset", 0))
        self.send(S.JobList(jobs=[job_info(j) for j in jobs], total=total))


class SweepCancelHandler(SweepBase):
    def post(self, sweep_id):
        sweep = self.own_sweep(sweep_id)
        counts = self.ctx.store.sweep_counts([sweep.id])[sweep.id]
        if all(status in FINAL for status in counts):
            raise E.Conflict(f"sweep {sweep_id} already ended: every element is final")
        # the pollers honour the requests (queued ones, and those in the scheduler) in
        # their next cycle; a staging or finishing element's worker sees its own
        self.ctx.store.cancel_sweep(sweep.id)
        self.send_sweep(self.ctx.store.get_sweep(sweep.id), 202)


def routes(prefix: str) -> list[tuple]:
    """(pattern, handler) pairs under the API prefix (e.g. /api/v1)."""
    return [
        (rf"{prefix}/sweeps", SweepsHandler),
        (rf"{prefix}/sweeps/{SWEEP_ID}", SweepHandler),
        (rf"{prefix}/sweeps/{SWEEP_ID}/jobs", SweepJobsHandler),
        (rf"{prefix}/sweeps/{SWEEP_ID}/cancel", SweepCancelHandler),
    ]
