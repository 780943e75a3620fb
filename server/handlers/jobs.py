"""Jobs: submit, list, show, events, logs, cancel."""
from __future__ import annotations

import hashlib
import json
import re

from hpcbridge import schemas as S
from hpcbridge.clock import aware
from hpcbridge.lifecycle import FINAL

from .. import errors as E
from ..submission import JobRequest, admit, check_notify
from .base import APIHandler, job_info

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX = 200
# printable ASCII, no space at either end (header values are trimmed)
IDEMPOTENCY_KEY = re.compile(rf"[!-~](?:[ -~]{{0,{IDEMPOTENCY_KEY_MAX - 2}}}[!-~])?")


class JobsHandler(APIHandler):
    def get(self):
        jobs, total = self.ctx.store.list_jobs(
            user=self.job_user_filter(), status=self.status_filter(),
            app=self.get_query_argument("app", None), hpc=self.get_query_argument("hpc", None),
            limit=self.int_arg("limit", 50, 1, 1000), offset=self.int_arg("offset", 0))
        self.send(S.JobList(jobs=[job_info(j) for j in jobs], total=total))

    def post(self):
        ctx = self.ctx
        key = self.idempotency_key()
        request = self.body(JobRequest)
        fingerprint = request_fingerprint(request)
        if key is not None and (job := ctx.store.job_by_key(self.user.name, key)):
            return self.replay(job, key, fingerprint)  # a retry: no second admission
        ok = admit(ctx.store, ctx.hpcs, self.user.name, request, ctx.site.default_quota_seconds)
        fields = dict(app=ok.app, hpc=ok.hpc, params=ok.params, resources=ok.resources,
                      upload=ok.upload, notify=check_notify(request.notify, ctx.site))
        if key is None:
            job = ctx.store.create_job(user=self.user.name, **fields)
        else:
            job, created = ctx.store.create_job_once(self.user.name, key, fingerprint,
                                                     **fields)
            if not created:  # a concurrent request with the same key won the insert
                return self.replay(job, key, fingerprint)
        ctx.queue.wake(ok.hpc)  # never fails the request: the poller offers queued jobs
        self.set_header("Location", f"{ctx.api_prefix}jobs/{job.id}")
        self.send(job_info(job), 201)

    def replay(self, job, key: str, fingerprint: str) -> None:
        """The answer to a repeated key: the job it made, if the request is the same."""
        if job.idempotency_fingerprint != fingerprint:
            raise E.ValidationFailed(
                f"Idempotency-Key {key!r} was already used for a different request (job "
                f"{job.id}); use a new key for a new job",
                [{"loc": ["header", IDEMPOTENCY_HEADER], "msg": "reused with another body"}])
        self.set_header("Location", f"{self.ctx.api_prefix}jobs/{job.id}")
        self.set_header("Idempotent-Replayed", "true")
        self.send(job_info(job), 201)

    def idempotency_key(self) -> str | None:
        """The request's Idempotency-Key, as sent (quotes of the IETF draft's
        structured-field form included: an opaque value); None without one."""
        key = self.request.headers.get(IDEMPOTENCY_HEADER)
        if key is None:
            return None
        if not IDEMPOTENCY_KEY.fullmatch(key):
            raise E.ValidationFailed(
                f"{IDEMPOTENCY_HEADER} must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII "
                "characters", [{"loc": ["header", IDEMPOTENCY_HEADER],
                                "msg": f"1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters"}])
        return key


def request_fingerprint(request: JobRequest) -> str:
    """The same request, however its JSON was spelled (key order, defaults left out)."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class JobHandler(APIHandler):
    def get(self, job_id):
        self.send(job_info(self.own_job(job_id, admin_view=True)))


class JobEventsHandler(APIHandler):
    def get(self, job_id):
        job = self.own_job(job_id, admin_view=True)
        self.send([S.EventInfo(time=aware(e.time), type=e.type, message=e.message)
                   for e in self.ctx.store.events(job.id)])


class JobLogsHandler(APIHandler):
    def get(self, job_id):
        job = self.own_job(job_id, admin_view=True)
        stream = self.get_query_argument("stream", "stdout")
        if stream not in ("stdout", "stderr"):
            raise E.ValidationFailed("stream must be stdout or stderr",
                                     [{"loc": ["query", "stream"], "msg": "stdout or stderr"}])
        offset = self.int_arg("offset", 0)
        data, next_offset = self.ctx.store.read_log(job.id, stream, offset,
                                                    self.int_arg("limit", 1 << 20, 1, 1 << 24))
        total = job.stdout_size if stream == "stdout" else job.stderr_size
        self.send(S.LogChunk(stream=stream, offset=offset, next_offset=next_offset,
                             data=data.decode(errors="replace"),
                             complete=job.status in FINAL and next_offset >= total))


class JobCancelHandler(APIHandler):
    admin_route = False

    def post(self, job_id):
        if self.admin_route:
            self.require_admin()
        job = self.own_job(job_id, admin_view=self.admin_route)
        if job.status in FINAL:
            raise E.Conflict(f"job {job_id} already {job.status}")
        job = self.ctx.store.request_cancel(job.id)
        if job.status in FINAL and not job.cancel_requested:  # it ended meanwhile
            raise E.Conflict(f"job {job_id} already {job.status}")
        self.ctx.queue.advance(job.id, job.hpc)
        self.send(job_info(job), 202)
