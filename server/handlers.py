"""REST handlers: HTTP only. They translate between API models and the store."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
import os
import shutil
import tempfile
import traceback
import urllib.parse
import uuid
import zipfile

from pydantic import BaseModel, ValidationError
from tornado import iostream, web

from hpcbridge import __version__
from hpcbridge import schemas as S
from hpcbridge.lifecycle import ACTIVE, FINAL
from hpcbridge.manifest import ManifestError, parse_manifest, validate_params, validate_resources

from . import errors as E
from .apps import fetch_app
from .auth import User, token_from_header
from .uploads import extract

log = logging.getLogger("hpcbridge.server")


def iso(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def job_info(job) -> S.JobInfo:
    data = {name: getattr(job, name) for name in S.JobInfo.model_fields}
    for name, value in data.items():
        if isinstance(value, dt.datetime):
            data[name] = iso(value)
    return S.JobInfo(**data)


class APIHandler(web.RequestHandler):
    """JSON in, JSON out; every error is `{"error", "message", "details"}`."""

    auth_required = True
    user: User

    @property
    def ctx(self):
        return self.settings["ctx"]

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    async def prepare(self):
        if self.auth_required:
            token = token_from_header(self.request.headers.get("Authorization"))
            self.user = await self.ctx.authenticator.authenticate(token)

    def require_admin(self):
        if not self.user.admin:
            raise E.Forbidden("this needs an admin of the JupyterHub")

    def body(self, model: type[BaseModel]) -> BaseModel:
        try:
            data = json.loads(self.request.body or b"{}", parse_constant=_no_constant,
                              parse_float=_finite_float)
        except (ValueError, RecursionError) as exc:
            # JSONDecodeError, UnicodeDecodeError, NaN/Infinity, ints past Python's
            # 4300-digit limit, nesting deeper than the recursion limit: all bad input
            raise E.BadRequest(f"the body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise E.BadRequest("the body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise E.from_pydantic(exc) from None

    def send(self, value, status: int = 200):
        self.set_status(status)
        if isinstance(value, BaseModel):
            self.finish(value.model_dump_json())
        elif isinstance(value, list):
            self.finish("[" + ",".join(v.model_dump_json() for v in value) + "]")
        else:
            self.finish(json.dumps(value))

    def int_arg(self, name: str, default: int, lo: int = 0, hi: int = 10**12) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise E.ValidationFailed(f"{name} must be an integer",
                                     [{"loc": ["query", name], "msg": "must be an integer"}]
                                     ) from None
        if not lo <= value <= hi:
            raise E.ValidationFailed(f"{name} must be between {lo} and {hi}",
                                     [{"loc": ["query", name], "msg": f"between {lo} and {hi}"}])
        return value

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        error_id = None
        if isinstance(exc, ManifestError):  # the manifest rules' neutral error is a 422
            exc = E.ValidationFailed(exc.message, exc.details)
        if isinstance(exc, E.APIError):
            status_code, body = exc.status, S.ErrorBody(
                error=exc.code, message=exc.message,
                details=[S.ErrorDetail(**d) for d in exc.details] if exc.details else None)
        elif isinstance(exc, web.HTTPError) and status_code < 500:
            if status_code == 405:
                self.set_header("Allow", ", ".join(self.allowed_methods()))
            code = {404: "not_found", 405: "method_not_allowed", 400: "bad_request",
                    413: "payload_too_large"}.get(status_code, "http_error")
            body = S.ErrorBody(error=code, message=exc.log_message or self._reason)
        else:
            status_code, error_id = 500, uuid.uuid4().hex[:12]
            body = S.ErrorBody(error="internal_error", error_id=error_id,
                               message=f"internal error {error_id}; the administrators "
                                       "can find it in the middleware's log")
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json")
        self.finish(body.model_dump_json())

    def allowed_methods(self) -> list[str]:
        return [m for m in self.SUPPORTED_METHODS if getattr(type(self), m.lower(), None)
                is not web.RequestHandler._unimplemented_method]

    def log_exception(self, typ, value, tb):
        if isinstance(value, E.APIError):
            if value.status >= 500:
                log.warning("%s %s: %s", self.request.method, self.request.path, value.message)
            return
        if isinstance(value, web.HTTPError) and value.status_code < 500:
            return
        log.error("unexpected error on %s %s\n%s", self.request.method, self.request.path,
                  "".join(traceback.format_exception(typ, value, tb)))

    def own_job(self, job_id: str, admin_view: bool = False):
        """The caller's job; someone else's job does not exist for them (404)."""
        user = None if (admin_view and self.user.admin) else self.user.name
        job = self.ctx.store.get_job(job_id, user=user)
        if job is None:
            raise E.NotFound(f"no job {job_id}")
        return job

    def status_filter(self) -> list[str]:
        """?status=running,queued (or repeated): known statuses only."""
        statuses = [s for v in self.get_query_arguments("status") for s in v.split(",") if s]
        bad = [s for s in statuses if s not in ACTIVE | FINAL]
        if bad:
            raise E.ValidationFailed(
                f"unknown status {bad[0]}; known: {', '.join(sorted(ACTIVE | FINAL))}",
                [{"loc": ["query", "status"], "msg": "unknown status"}])
        return statuses

    def job_user_filter(self) -> str | None:
        """Admins pass ?all=1 to see everybody's jobs through the same routes."""
        return None if (self.user.admin and self.get_query_argument("all", "") == "1") \
            else self.user.name


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


class HPCsHandler(APIHandler):
    def get(self):
        out = []
        for hpc in self.ctx.hpcs.values():
            state = self.ctx.store.hpc_state(hpc.id)
            out.append(S.HPCInfo(
                id=hpc.id, name=hpc.name, scheduler=hpc.scheduler, partitions=hpc.partitions,
                capacity=hpc.capacity, active_jobs=self.ctx.store.count_jobs(hpc.id),
                reachable=state.reachable, draining=state.draining, message=state.message))
        self.send(out)


def app_info(app, hpcs) -> S.AppInfo:
    manifest = parse_manifest(app.manifest)
    supported = [h for h in manifest.supported_hpc if h in hpcs] or \
        [h.id for h in hpcs.values() if h.scheduler in manifest.supported_hpc]
    default = manifest.default_hpc if manifest.default_hpc in supported else \
        (supported[0] if supported else None)
    return S.AppInfo(id=app.id, name=manifest.name, description=manifest.description,
                     container=manifest.container, supported_hpc=supported, default_hpc=default,
                     require_upload_data=manifest.require_upload_data,
                     param_rules=manifest.param_rules,
                     slurm_input_rules=manifest.slurm_input_rules)


class AppsHandler(APIHandler):
    def get(self):
        self.send([app_info(a, self.ctx.hpcs) for a in self.ctx.store.list_apps()])

    async def post(self):
        self.require_admin()
        data = self.body(S.AppCreate)
        app = await asyncio.get_running_loop().run_in_executor(
            None, fetch_app, data.source, self.ctx.site.apps_dir, data.id)
        self.ctx.store.put_app(app)
        self.set_header("Location", f"{self.ctx.api_prefix}apps/{app.id}")
        self.send(app_info(app, self.ctx.hpcs), 201)


class AppHandler(APIHandler):
    def get(self, app_id):
        app = self.ctx.store.get_app(app_id)
        if app is None:
            raise E.NotFound(f"no app {app_id}")
        self.send(app_info(app, self.ctx.hpcs))


class JobsHandler(APIHandler):
    def get(self):
        jobs, total = self.ctx.store.list_jobs(
            user=self.job_user_filter(), status=self.status_filter(),
            app=self.get_query_argument("app", None), hpc=self.get_query_argument("hpc", None),
            limit=self.int_arg("limit", 50, 1, 1000), offset=self.int_arg("offset", 0))
        self.send(S.JobList(jobs=[job_info(j) for j in jobs], total=total))

    def post(self):
        request = self.body(S.JobCreate)
        ctx = self.ctx
        app = ctx.store.get_app(request.app)
        if app is None:
            raise E.ValidationFailed(f"no app {request.app}",
                                     [{"loc": ["app"], "msg": "unknown app"}])
        info = app_info(app, ctx.hpcs)
        hpc_id = request.hpc or info.default_hpc
        if hpc_id not in info.supported_hpc:
            raise E.ValidationFailed(
                f"app {app.id} cannot run on {hpc_id}; it supports "
                f"{', '.join(info.supported_hpc) or 'no configured HPC'}",
                [{"loc": ["hpc"], "msg": f"must be one of {', '.join(info.supported_hpc)}"}])
        hpc = ctx.hpcs[hpc_id]
        manifest = parse_manifest(app.manifest)
        params = validate_params(manifest, request.params)
        resources = validate_resources(manifest, request.resources, hpc.partitions,
                                       hpc.max_time_minutes)
        if request.upload:
            if ctx.store.get_upload(request.upload, user=self.user.name) is None:
                raise E.ValidationFailed(f"no upload {request.upload}",
                                         [{"loc": ["upload"], "msg": "unknown upload"}])
        elif manifest.require_upload_data:
            raise E.ValidationFailed("this app needs input data",
                                     [{"loc": ["upload"], "msg": "is required"}])
        if ctx.store.hpc_state(hpc_id).draining:
            raise E.Conflict(f"{hpc_id} is drained by the administrators; try again later")
        quota = ctx.store.quota(self.user.name, ctx.site.default_quota_seconds)
        if quota.limit_seconds is not None and quota.used_seconds >= quota.limit_seconds:
            raise E.QuotaExceeded(
                f"compute quota used up: {quota.used_seconds:.0f} of "
                f"{quota.limit_seconds:.0f} CPU-seconds; ask an administrator for more")
        job = ctx.store.create_job(user=self.user.name, app=app.id, hpc=hpc_id, params=params,
                                   resources=resources, upload=request.upload)
        ctx.queue.advance(job.id, hpc_id)  # never fails the request: reconciliation re-sends
        self.set_header("Location", f"{ctx.api_prefix}jobs/{job.id}")
        self.send(job_info(job), 201)


class JobHandler(APIHandler):
    def get(self, job_id):
        self.send(job_info(self.own_job(job_id, admin_view=True)))


class JobEventsHandler(APIHandler):
    def get(self, job_id):
        job = self.own_job(job_id, admin_view=True)
        self.send([S.EventInfo(time=iso(e.time), type=e.type, message=e.message)
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


class AdminCancelHandler(JobCancelHandler):
    admin_route = True


def _results_root(ctx, job) -> str:
    return os.path.join(ctx.site.results_dir, job.id)


def _inside(root: str, path: str) -> bool:
    """Whether path, links resolved, stays in root (root itself counts)."""
    try:
        real, top = os.path.realpath(path), os.path.realpath(root)
    except (ValueError, OSError):  # NUL bytes, names too long, link loops
        return False
    return real == top or real.startswith(top + os.sep)


def _confined(root: str, rel: str) -> str:
    full = os.path.join(root, rel)
    if not _inside(root, full):
        raise E.NotFound(f"no result {rel}")
    return os.path.realpath(full)


def _result_files(root: str, folder: str):
    """(path, name relative to folder) of the regular files under folder whose links, if
    any, stay in root: a job's results may hold links, and they must not lead the middleware
    to serve its own files."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if _inside(root, path) and os.path.isfile(path):
                yield path, os.path.relpath(path, folder)


class ResultsHandler(APIHandler):
    def get(self, job_id):
        job = self.own_job(job_id, admin_view=True)
        root = _results_root(self.ctx, job)
        entries = []
        for dirpath, dirnames, _ in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if _inside(root, os.path.join(dirpath, d)))
            entries += [S.ResultEntry(path=os.path.relpath(os.path.join(dirpath, d), root),
                                      size=0, is_dir=True) for d in dirnames]
        entries += [S.ResultEntry(path=rel, size=os.path.getsize(path), is_dir=False)
                    for path, rel in _result_files(root, root)]
        self.send(sorted(entries, key=lambda e: e.path))


class ResultFileHandler(APIHandler):
    async def get(self, job_id, rel):
        job = self.own_job(job_id, admin_view=True)
        root = _results_root(self.ctx, job)
        full = _confined(root, rel or ".")
        if os.path.isdir(full):
            # a folder comes as a zip, built in a temporary file and streamed
            with tempfile.TemporaryFile() as tmp:
                await asyncio.get_running_loop().run_in_executor(
                    None, _zip_folder, root, full, tmp)
                tmp.seek(0)
                name = (os.path.basename(full) if rel.strip("/.") else job.id) + ".zip"
                await self._stream(tmp, name, "application/zip")
        elif os.path.isfile(full):
            with open(full, "rb") as f:
                await self._stream(f, os.path.basename(full), "application/octet-stream")
        else:
            raise E.NotFound(f"no result {rel}")

    async def _stream(self, f, name, content_type):
        self.set_header("Content-Type", content_type)
        self.set_header("Content-Disposition", content_disposition(name))
        while chunk := f.read(256 * 1024):
            self.write(chunk)
            try:
                await self.flush()
            except iostream.StreamClosedError:
                return
        self.finish()


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback name and the exact one in UTF-8 (RFC 6266):
    header values are latin-1, and a result file may be called anything."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return (f'attachment; filename="{fallback}"; '
            f"filename*=UTF-8''{urllib.parse.quote(name, safe='')}")


def _zip_folder(root, folder, fileobj):
    with zipfile.ZipFile(fileobj, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, rel in _result_files(root, folder):
            zf.write(path, rel)


# a chunked upload past the limit is read and thrown away up to this much more, so that the
# client, still sending, reads a 413 instead of a reset; past that the 413 is sent at once
# and the connection closed
UPLOAD_DISCARD_SLACK = 4 << 20


@web.stream_request_body
class UploadHandler(APIHandler):
    """POST a zip/tar archive (or one file with ?name=) as the raw body, streamed to disk."""

    _tmp = None
    _body_read = False

    async def prepare(self):
        await super().prepare()
        limit = self.ctx.max_upload_bytes
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise E.PayloadTooLarge(f"upload larger than the limit of {limit} bytes")
        # tornado answers a bare 400 past its own bound (for chunked bodies even before
        # the data arrives): lift it, data_received enforces ours in pieces of <= 64 KiB
        self.request.connection.set_max_body_size(1 << 62)
        os.makedirs(self.ctx.site.uploads_dir, exist_ok=True)
        self._tmp = tempfile.NamedTemporaryFile(dir=self.ctx.site.uploads_dir,
                                                prefix=".incoming-", delete=False)
        self._size = 0
        self._too_large = False

    def data_received(self, chunk):
        if self._finished:
            return
        self._size += len(chunk)
        limit = self.ctx.max_upload_bytes
        if self._size > limit:
            if not self._too_large:
                self._too_large = True
                self._discard()  # nothing of it stays on disk
            if self._size > limit + UPLOAD_DISCARD_SLACK:
                # answer now; tornado closes the connection after the response
                self.send_error(413, exc_info=(None, E.PayloadTooLarge(
                    f"upload larger than the limit of {limit} bytes"), None))
            return
        self._tmp.write(chunk)

    def _discard(self):
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            tmp.close()
            try:
                os.unlink(tmp.name)
            except FileNotFoundError:
                pass

    def on_finish(self):
        self._discard()

    def on_connection_close(self):
        self._discard()

    def write_error(self, status_code, **kwargs):
        if not self._body_read:
            # answered before the body was read: tornado closes the connection after this
            # response, and a client must not send its next request on it
            self.set_header("Connection", "close")
        super().write_error(status_code, **kwargs)

    async def post(self):
        self._body_read = True
        try:
            upload = await self._receive()
        finally:
            self._discard()  # before the answer goes out, not after
        self.send(S.UploadInfo(id=upload.id, name=upload.name, size=upload.size), 201)

    async def _receive(self):
        limit = self.ctx.max_upload_bytes
        if self._too_large:
            raise E.PayloadTooLarge(f"upload larger than the limit of {limit} bytes")
        self._tmp.close()
        if self._size == 0:
            raise E.ValidationFailed("the upload is empty", [{"loc": ["body"], "msg": "empty"}])
        upload_id = uuid.uuid4().hex
        dest = os.path.join(self.ctx.site.uploads_dir, upload_id)
        name = self.get_query_argument("name", "")
        if "\0" in name or len(name.encode()) > 255:
            raise E.ValidationFailed("invalid file name: NUL or longer than 255 bytes",
                                     [{"loc": ["query", "name"], "msg": "invalid"}])
        try:
            if name and not name.endswith((".zip", ".tar", ".tar.gz", ".tgz")):
                safe = os.path.basename(name.replace("\\", "/"))
                if safe in ("", ".", ".."):
                    raise E.ValidationFailed("invalid file name",
                                             [{"loc": ["query", "name"], "msg": "invalid"}])
                os.makedirs(dest)
                shutil.move(self._tmp.name, os.path.join(dest, safe))
                size = self._size
            else:
                size = await asyncio.get_running_loop().run_in_executor(
                    None, extract, self._tmp.name, dest, limit * 4)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        return self.ctx.store.add_upload(id=upload_id, user=self.user.name,
                                         name=name or upload_id, path=dest, size=size)


class AdminJobsHandler(APIHandler):
    def get(self):
        self.require_admin()
        jobs, total = self.ctx.store.list_jobs(
            user=self.get_query_argument("user", None), status=self.status_filter(),
            limit=self.int_arg("limit", 50, 1, 1000), offset=self.int_arg("offset", 0))
        self.send(S.JobList(jobs=[job_info(j) for j in jobs], total=total))


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
        HPCsHandler.get(self)  # answer with the HPC list


class AdminWorkersHandler(APIHandler):
    def get(self):
        self.require_admin()
        timeout = dt.timedelta(seconds=self.ctx.site.worker_timeout)
        now = dt.datetime.now(dt.timezone.utc)
        self.send([S.WorkerInfo(id=w.id, host=w.host, pid=w.pid, started_at=iso(w.started_at),
                                heartbeat_at=iso(w.heartbeat_at),
                                alive=now - iso(w.heartbeat_at) < timeout, leases=w.leases or [])
                   for w in self.ctx.store.workers()])


class EventStreamHandler(APIHandler):
    """Server-sent events: one `job` event per change of the caller's jobs."""

    def set_default_headers(self):
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")

    async def get(self):
        since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
        user = self.job_user_filter()
        quiet = 0.0
        self._closed = False
        self.write(": connected\n\n")
        await self.flush()
        while not self._closed:
            jobs, _ = self.ctx.store.list_jobs(user=user, since=since, limit=500)
            for job in sorted(jobs, key=lambda j: j.updated_at):
                since = max(since, job.updated_at)
                self.write(f"event: job\nid: {job.id}\ndata: {job_info(job).model_dump_json()}\n\n")
            quiet = 0.0 if jobs else quiet + self.ctx.sse_interval
            if quiet >= 15:
                self.write(": keepalive\n\n")
                quiet = 0.0
            try:
                await self.flush()
            except iostream.StreamClosedError:
                return
            await asyncio.sleep(self.ctx.sse_interval)

    def on_connection_close(self):
        self._closed = True
