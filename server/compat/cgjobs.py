"""CyberGIS's job and folder routes onto hpcbridge jobs: create (a draft), set, submit, show,
events, logs, the result listing, cancel, runtime; result folders. Validation, admission
and ownership are hpcbridge's own (server/submission.py, hpcbridge/manifest.py, the store)."""
from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError

from hpcbridge.lifecycle import FINAL

from .. import errors as E
from ..handlers.results import result_entries, results_root
from ..submission import JobRequest, admit, app_info, check_notify, check_rules, find_app
from .cghandlers import JOB_ID, Caller, CGBody, CGHandler
from .cgmap import MAINTAINER, coerce_params, slurm_to_resources
from .cgviews import draft_object, folder_object, job_object, log_objects, result_paths


class CGCreate(CGBody):
    maintainer: str = MAINTAINER
    hpc: str | None = None
    user: str | None = None
    password: str | None = None


class CGUpdate(CGBody):
    localExecutableFolder: dict[str, Any] | None = None
    localDataFolder: dict[str, Any] | None = None
    localResultFolder: dict[str, Any] | None = None
    param: dict[str, Any] | None = None
    env: dict[str, Any] | None = None
    slurm: dict[str, Any] | None = None


def _invalid(field: str, message: str) -> E.ValidationFailed:
    return E.ValidationFailed(f"{field}: {message}", [{"loc": [field], "msg": message}])


def upload_of(folder: dict | None, api: str) -> str | None:
    """The hpcbridge upload a `localDataFolder` names; Globus and local paths are refused
    with the hpcbridge way to send data."""
    if not folder:
        return None
    if folder.get("type") == "upload" and isinstance(folder.get("id"), str):
        return folder["id"]
    raise _invalid("localDataFolder", f"type {str(folder.get('type'))[:40]!r} is not "
                   f"available on hpcbridge: upload the data with POST {api}uploads and send "
                   'localDataFolder={"type": "upload", "id": <its id>}')


def job_request(ctx, caller: Caller, draft: dict) -> tuple[JobRequest, dict | None]:
    """The draft as an hpcbridge submission and its `notify` (from Slurm's mail_user),
    judged by the app's manifest rules (every broken rule at once) and the site's
    notification settings; raises what the native API would answer."""
    folder = draft.get("localExecutableFolder") or {}
    if folder.get("type") != "git" or not isinstance(folder.get("gitId"), str):
        raise _invalid("localExecutableFolder",
                       'must be {"type": "git", "gitId": <an app of GET /git>}')
    if draft.get("env"):
        raise _invalid("env", "is not supported by hpcbridge: pass values as param")
    app = find_app(ctx.store, folder["gitId"])
    info = app_info(app, ctx.hpcs)
    resources, notify = slurm_to_resources(draft.get("slurm"), set(info.slurm_input_rules))
    try:
        request = JobRequest(app=app.id, hpc=draft.get("hpc"), resources=resources,
                             params=coerce_params(draft.get("param"), info.param_rules),
                             upload=upload_of(draft.get("localDataFolder"), ctx.api_prefix),
                             notify=notify)
    except ValidationError as exc:
        raise E.from_pydantic(exc) from None
    check_rules(info, ctx.hpcs, request,
                lambda upload_id: ctx.store.get_upload(upload_id, user=caller.user.name)
                is not None)
    return request, check_notify(request.notify, ctx.site)


class CGJobHandler(CGHandler):
    def draft(self, caller: Caller, job_id: str) -> dict | None:
        return self.drafts(caller).get(job_id) if JOB_ID.fullmatch(job_id) else None

    def log_tail(self, job, stream: str) -> str:
        """The last log_tail_bytes of a stream (the whole log: the native logs route)."""
        store, limit = self.ctx.store, self.compat.log_tail_bytes
        size = min(job.stdout_size if stream == "stdout" else job.stderr_size,
                   store.max_log_bytes)
        offset = max(0, size - limit)
        data, _ = store.read_log(job.id, stream, offset, limit)
        text = data.decode(errors="replace")
        if offset:
            text = (f"[the first {offset} bytes are left out: GET {self.ctx.api_prefix}"
                    f"jobs/{job.id}/logs?stream={stream}]\n{text}")
        return text

    def logs(self, job) -> list[dict]:
        return log_objects(job, self.log_tail(job, "stdout"), self.log_tail(job, "stderr"))

    def full_job(self, job, caller: Caller) -> dict:
        return job_object(job, caller.user_id, self.ctx.store.events(job.id), self.logs(job))

    async def ended_job(self, folder_id: str):
        """(caller, job) of a result folder: the caller's job, ended."""
        caller, _ = await self.caller()
        job = self.own_stored_job(caller, folder_id)
        if job.status not in FINAL:
            raise E.NotFound(f"no folder {folder_id}: its job has not ended")
        return caller, job


class JobCreateHandler(CGJobHandler):
    async def post(self):
        caller, body = await self.caller(CGCreate)
        if body.user or body.password:
            raise _invalid("password", "hpcbridge runs jobs with the site's own HPC account: "
                                       "send no HPC user name or password")
        if body.maintainer != MAINTAINER:
            raise _invalid("maintainer", f"unrecognized maintainer {body.maintainer[:80]!r}; "
                                         f"this server offers {MAINTAINER}")
        if body.hpc is not None and body.hpc not in self.ctx.hpcs:
            raise _invalid("hpc", f"unrecognized hpc {body.hpc[:80]!r}; known: "
                                  f"{', '.join(self.ctx.hpcs)}")
        draft = self.drafts(caller).create(body.hpc)
        self.send(draft_object(draft, caller.user_id))


class UserJobsHandler(CGJobHandler):
    async def get(self):
        caller, _ = await self.caller()
        jobs, _ = self.ctx.store.list_jobs(user=caller.user.name,
                                           limit=self.compat.max_jobs_listed)
        # oldest first, as CyberGIS lists them (the client takes the last as the newest)
        self.send({"job": [job_object(j, caller.user_id) for j in reversed(jobs)]})


class JobHandler(CGJobHandler):
    async def get(self, job_id):
        caller, _ = await self.caller()
        draft = self.draft(caller, job_id)
        if draft is not None:
            return self.send(draft_object(draft, caller.user_id))
        self.send(self.full_job(self.own_stored_job(caller, job_id), caller))

    async def put(self, job_id):
        caller, body = await self.caller(CGUpdate)
        draft = self.draft(caller, job_id)
        if draft is None:
            self.own_stored_job(caller, job_id)  # someone else's id: not found
            raise E.Conflict(f"job {job_id} is already submitted: it cannot be set again")
        for name in ("localExecutableFolder", "localDataFolder", "localResultFolder",
                     "param", "env", "slurm"):
            if getattr(body, name) is not None:
                draft[name] = getattr(body, name)
        if draft.get("localExecutableFolder"):
            job_request(self.ctx, caller, draft)  # refuse now what the submit would refuse
        if not self.drafts(caller).save(draft):
            raise E.NotFound(f"no job {job_id}: it was not submitted in time and expired")
        self.send(draft_object(draft, caller.user_id))


class JobSubmitHandler(CGJobHandler):
    async def post(self, job_id):
        caller, _ = await self.caller()
        drafts = self.drafts(caller)
        draft = drafts.take(job_id) if JOB_ID.fullmatch(job_id) else None
        if draft is None:  # submitted already (perhaps just now, by a concurrent call)
            self.own_stored_job(caller, job_id)
            raise E.Conflict(f"job {job_id} is already submitted")
        ctx = self.ctx
        try:
            request, notify = job_request(ctx, caller, draft)
            ok = admit(ctx.store, ctx.hpcs, caller.user.name, request,
                       ctx.site.default_quota_seconds)
            job = ctx.store.create_job(
                id=draft["id"], user=caller.user.name, app=ok.app, hpc=ok.hpc,
                params=ok.params, resources=ok.resources, upload=ok.upload, notify=notify)
        except BaseException:
            drafts.put_back(draft)  # refused or failed: the user may set it and try again
            raise
        ctx.queue.wake(job.hpc)  # never fails: the poller offers queued jobs
        self.send(self.full_job(job, caller))


class JobEventsHandler(CGJobHandler):
    async def get(self, job_id):
        caller, _ = await self.caller()
        if self.draft(caller, job_id) is not None:
            return self.send([])
        job = self.own_stored_job(caller, job_id)
        self.send(job_object(job, caller.user_id, self.ctx.store.events(job.id))["events"])


class JobLogsHandler(CGJobHandler):
    async def get(self, job_id):
        caller, _ = await self.caller()
        if self.draft(caller, job_id) is not None:
            return self.send([])
        self.send(self.logs(self.own_stored_job(caller, job_id)))


class ResultFolderContentHandler(CGJobHandler):
    async def get(self, job_id):
        caller, _ = await self.caller()
        if self.draft(caller, job_id) is not None:
            return self.send([])
        job = self.own_stored_job(caller, job_id)
        if job.status not in FINAL:
            return self.send([])
        entries = await asyncio.get_running_loop().run_in_executor(
            None, result_entries, results_root(self.ctx, job))
        self.send(result_paths(entries))


class JobCancelHandler(CGJobHandler):
    async def put(self, job_id):
        caller, _ = await self.caller()
        if JOB_ID.fullmatch(job_id) and self.drafts(caller).discard(job_id):
            return self.send({"messages": ["job cancelled before it was submitted"]})
        job = self.own_stored_job(caller, job_id)
        if job.status in FINAL:
            raise E.Conflict(f"job is not in queue or running jobs: it already {job.status}")
        job = self.ctx.store.request_cancel(job.id)
        if job.status in FINAL and not job.cancel_requested:  # it ended meanwhile
            raise E.Conflict(f"job is not in queue or running jobs: it already {job.status}")
        self.ctx.queue.advance(job.id, job.hpc)
        self.send({"messages": ["job successfully added to cancel queue"]})


class StatisticHandler(CGJobHandler):
    async def get(self, job_id):
        caller, _ = await self.caller()
        job = self.own_stored_job(caller, job_id)
        self.send({"runtime_in_seconds": job.elapsed_seconds or 0})


# --- result folders (a folder's id is its job's) --------------------------------------------
def globus_refused(ctx, folder_id: str) -> E.BadRequest:
    return E.BadRequest("Globus is not available on hpcbridge: fetch results with GET "
                        f"{ctx.api_prefix}jobs/{folder_id}/results/<path> (a folder comes as "
                        f"a zip; the listing is GET {ctx.api_prefix}jobs/{folder_id}/results)")


class FoldersHandler(CGJobHandler):
    async def get(self):
        caller, _ = await self.caller()
        jobs, _ = self.ctx.store.list_jobs(user=caller.user.name, status=list(FINAL),
                                           limit=self.compat.max_jobs_listed)
        self.send({"folder": [folder_object(j, caller.user_id) for j in reversed(jobs)]})


class FolderHandler(CGJobHandler):
    async def get(self, folder_id):
        caller, job = await self.ended_job(folder_id)
        self.send(folder_object(job, caller.user_id))

    async def put(self, folder_id):
        await self.ended_job(folder_id)
        raise E.BadRequest("renaming result folders is not supported by hpcbridge")

    async def delete(self, folder_id):
        await self.ended_job(folder_id)
        raise E.BadRequest("deleting result folders is not supported by hpcbridge: the "
                           "site removes them")


class GlobusHandler(CGJobHandler):
    async def get(self, folder_id):
        await self.ended_job(folder_id)
        raise globus_refused(self.ctx, folder_id)

    async def post(self, folder_id):
        await self.ended_job(folder_id)
        raise globus_refused(self.ctx, folder_id)
