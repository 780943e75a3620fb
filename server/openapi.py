"""The OpenAPI 3.1 document, generated from the pydantic models of hpcbridge.schemas."""
from __future__ import annotations

from pydantic.json_schema import models_json_schema

from hpcbridge import __version__, schemas_admin, schemas_sessions, schemas_sweeps
from hpcbridge import schemas as S
from hpcbridge.lifecycle import STATUSES

# (method, path, summary, request model, {status: response model or list[model]}, admin)
ROUTES = [
    ("get", "/health", "Liveness", None, {200: S.Health}, False),
    ("get", "/me", "The caller, admin flag and quota", None, {200: S.Me}, False),
    ("get", "/hpcs", "HPCs with capacity, load and reachability", None,
     {200: [S.HPCInfo]}, False),
    ("get", "/apps", "Applications", None, {200: [S.AppInfo]}, False),
    ("post", "/apps", "Register an application (admin)", S.AppCreate, {201: S.AppInfo}, True),
    ("get", "/apps/{app_id}", "One application", None, {200: S.AppInfo}, False),
    ("get", "/jobs", "The caller's jobs", None, {200: S.JobList}, False),
    ("post", "/jobs", "Submit a job", S.JobCreate, {201: S.JobInfo}, False),
    ("get", "/jobs/{job_id}", "One job", None, {200: S.JobInfo}, False),
    ("get", "/jobs/{job_id}/events", "A job's events", None, {200: [S.EventInfo]}, False),
    ("get", "/jobs/{job_id}/logs", "A job's output from an offset", None,
     {200: S.LogChunk}, False),
    ("post", "/jobs/{job_id}/cancel", "Cancel a job", None, {202: S.JobInfo}, False),
    ("get", "/jobs/{job_id}/results", "A job's result files", None,
     {200: [S.ResultEntry]}, False),
    ("get", "/jobs/{job_id}/results/{path}", "One result file (a folder as zip)", None,
     {200: "binary"}, False),
    ("post", "/uploads", "Upload input data (zip/tar, or one file with ?name=)", "binary",
     {201: S.UploadInfo}, False),
    ("get", "/events/stream", "Server-sent events of the caller's job changes", None,
     {200: "event-stream"}, False),
    ("get", "/admin/jobs", "Every user's jobs (admin)", None, {200: S.JobList}, True),
    ("post", "/admin/jobs/{job_id}/cancel", "Cancel any job (admin)", None,
     {202: S.JobInfo}, True),
    ("put", "/admin/users/{name}/quota", "Set a user's quota (admin)", S.QuotaUpdate,
     {200: S.Quota}, True),
    ("post", "/admin/hpcs/{hpc_id}/drain", "Stop admitting jobs to an HPC (admin)", None,
     {200: [S.HPCInfo]}, True),
    ("post", "/admin/hpcs/{hpc_id}/resume", "Admit jobs to an HPC again (admin)", None,
     {200: [S.HPCInfo]}, True),
    ("get", "/admin/workers", "Maintainer workers: heartbeats, leases and the jobs each "
     "holds (admin)", None, {200: [schemas_admin.WorkerHealth]}, True),
    *schemas_sweeps.ROUTES, *schemas_sessions.ROUTES, *schemas_admin.ROUTES,
]
_STATUS = {"type": "array", "items": {"type": "string", "enum": list(STATUSES)},
           "description": "repeat it, or join with commas"}
_LIMIT = {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}
_OFFSET = {"type": "integer", "minimum": 0, "default": 0}
# query parameters, with the bounds the handlers enforce (422 outside them)
QUERY = {
    "/jobs": [("status", _STATUS), ("app", "string"), ("hpc", "string"),
              ("limit", _LIMIT), ("offset", _OFFSET),
              ("all", {"type": "string", "description": "admins: 1 = everybody's jobs"})],
    "/admin/jobs": [("status", _STATUS), ("user", "string"), ("limit", _LIMIT),
                    ("offset", _OFFSET)],
    "/jobs/{job_id}/logs": [("stream", {"type": "string", "enum": ["stdout", "stderr"],
                                        "default": "stdout"}),
                            ("offset", _OFFSET),
                            ("limit", {"type": "integer", "minimum": 1, "maximum": 1 << 24})],
    "/events/stream": [("last_event_id", {
        "type": "integer", "minimum": 0,
        "description": "the Last-Event-ID header, for clients or proxies that cannot send it"})],
    "/uploads": [("name", {"type": "string", "description": "the file's name when the body "
                                                            "is one file, not an archive"})],
    **schemas_sweeps.QUERY, **schemas_sessions.QUERY, **schemas_admin.QUERY,
}
# request headers the handlers read (with the rules they enforce: 422 outside them)
HEADERS = {
    ("post", "/jobs"): [("Idempotency-Key", {
        "type": "string", "minLength": 1, "maxLength": 200,
        "pattern": "^[!-~]([ -~]{0,198}[!-~])?$",
        "description": "printable ASCII, unique per request you mean (e.g. a UUID). A retry "
                       "with the same key and the same body gets the job the first request "
                       "made (201, header Idempotent-Replayed: true), never a second job; "
                       "the same key with another body is a 422."})],
    ("get", "/events/stream"): [("Last-Event-ID", {
        "type": "string", "pattern": "^[0-9]+$",
        "description": "resume after this event id (the `id:` of the last message read): "
                       "every event after it is sent, none twice"})],
}
# a sweep's POST takes the same key, with the same rules
HEADERS[("post", "/sweeps")] = HEADERS[("post", "/jobs")]
# path parameters that are not free strings
_HEX_ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
PATH = {"job_id": _HEX_ID, "sweep_id": _HEX_ID, "session_id": _HEX_ID}
ERRORS = {400: "Bad request", 401: "Missing or invalid token", 403: "Forbidden",
          404: "Not found", 409: "Conflict", 413: "Too large", 422: "Invalid input",
          429: "Too many concurrent requests of this user (event streams, uploads)",
          500: "Internal error (with an error id)", 503: "A dependency is unavailable"}


def build_openapi(prefix: str = "/api/v1") -> dict:
    models = {S.ErrorBody, *(m for r in ROUTES for m in _models(r))}
    _, defs = models_json_schema([(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
                                 ref_template="#/components/schemas/{model}")
    paths: dict = {}
    for method, path, summary, request, responses, admin in ROUTES:
        op: dict = {"summary": summary, "operationId": _op_id(method, path),
                    "responses": {}, "tags": ["admin" if admin else path.split("/")[1]]}
        params = [{"name": p, "in": "path", "required": True,
                   "schema": PATH.get(p, {"type": "string"})} for p in _path_params(path)]
        params += [{"name": n, "in": "query", "required": False,
                    "schema": t if isinstance(t, dict) else {"type": t}}
                   for n, t in QUERY.get(path, [])]
        params += [{"name": n, "in": "header", "required": False, "schema": t}
                   for n, t in HEADERS.get((method, path), [])]
        if params:
            op["parameters"] = params
        if path != "/health" and path != "/spec":
            op["security"] = [{"token": []}]
        if request == "binary":
            op["requestBody"] = {"required": True, "content": {
                "application/octet-stream": {"schema": {"type": "string",
                                                        "contentMediaType": "application/octet-stream"}}}}
        elif request is not None:
            op["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": _ref(request)}}}
        for status, model in responses.items():
            if model is None:  # no body (204)
                op["responses"][str(status)] = {"description": summary}
                continue
            if model == "binary":
                # a file as it is; a folder as a zip
                content = {"application/octet-stream": {"schema": {"type": "string"}},
                           "application/zip": {"schema": {"type": "string"}}}
            elif model == "event-stream":
                content = {"text/event-stream": {"schema": {"type": "string"}}}
            elif isinstance(model, list):
                content = {"application/json": {"schema": {"type": "array",
                                                           "items": _ref(model[0])}}}
            else:
                content = {"application/json": {"schema": _ref(model)}}
            op["responses"][str(status)] = {"description": summary, "content": content}
        for status, text in ERRORS.items():
            op["responses"].setdefault(str(status), {"description": text, "content": {
                "application/json": {"schema": _ref(S.ErrorBody)}}})
        paths.setdefault(prefix + path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "hpcbridge middleware", "version": __version__,
                 "description": "Run HPC jobs from JupyterLab. Authenticate with "
                                "`Authorization: token <JupyterHub token>`."},
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {}), "securitySchemes": {
            "token": {"type": "apiKey", "in": "header", "name": "Authorization",
                      "description": "`token <JupyterHub API token>`"}}},
    }


def _models(route):
    _, _, _, request, responses, _ = route
    if request not in (None, "binary"):
        yield request
    for model in responses.values():
        if isinstance(model, list):
            yield model[0]
        elif model is not None and not isinstance(model, str):
            yield model


def _ref(model) -> dict:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _op_id(method: str, path: str) -> str:
    words = [p.strip("{}") for p in path.split("/") if p]
    return method + "_" + "_".join(words)
