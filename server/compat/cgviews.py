"""hpcbridge's apps, HPCs and jobs as the objects CyberGIS-Compute answers (pure)."""
from __future__ import annotations

from typing import Any

from hpcbridge import schemas as S

from .cgmap import EVENT_TYPES, MAINTAINER, SLURM_NAMES, iso, resources_to_slurm

FAILED_STATUSES = ("failed", "cancelled")


def hpc_entry(cfg) -> dict:
    """An HPC as `GET /hpc` shows it. The login host stays private: the route needs no
    token, and users never reach the HPC themselves (the site's account runs the jobs)."""
    name = cfg.name or cfg.id
    return {"name": name, "description": f"{name} ({cfg.scheduler}, run by hpcbridge)",
            "ip": None, "port": None, "is_community_account": True,
            "job_pool_capacity": cfg.capacity, "globus": None, "scheduler": cfg.scheduler,
            "slurm_input_rules": {}, "allowlist": [], "denylist": []}


def slurm_rules(rules: dict[str, S.SlurmRule]) -> dict:
    """An app's resource rules under the Slurm input names the client's form knows
    (cpus → cpu_per_task); every rule keeps min, max, step, default and unit."""
    out = {}
    for name, rule in rules.items():
        data = rule.model_dump(exclude_none=True)
        data.setdefault("unit", "Minutes" if name == "time" else "None")
        out[SLURM_NAMES.get(name, name)] = data
    return out


def git_entry(info: S.AppInfo, app) -> dict:
    """An app as a `GET /git` entry: CyberGIS's manifest fields."""
    manifest = app.manifest or {}
    source = app.source or ""
    public = source if source.startswith(("https://", "http://", "git@", "git://")) else None
    return {
        "name": info.name, "description": info.description,
        "estimated_runtime": str(manifest.get("estimated_runtime") or "unknown"),
        "container": info.container, "repository": public, "commit": None,
        "supported_hpc": info.supported_hpc, "default_hpc": info.default_hpc,
        "require_upload_data": info.require_upload_data,
        "param_rules": {k: r.model_dump(exclude_none=True) for k, r in info.param_rules.items()},
        "slurm_input_rules": slurm_rules(info.slurm_input_rules),
    }


def maintainer_entry(hpc_ids: list[str], capacity: int) -> dict:
    return {MAINTAINER: {
        "hpc": hpc_ids, "default_hpc": hpc_ids[0] if hpc_ids else None,
        "job_pool_capacity": capacity, "maintainer": "hpcbridge",
        "executable_folder": {"from_user": True, "allowed_protocol": "git"},
        "data_folder": {"from_user": True, "allowed_protocol": "upload"},
        "result_folder": {"from_user": False}}}


def event_object(event, job_id: str) -> dict:
    type_ = EVENT_TYPES.get(event.type) or "JOB_" + event.type.upper()
    message = event.message
    if event.type == "cancelled":
        message = f"cancelled: {message}" if message else "cancelled"
    return {"type": type_, "message": message, "createdAt": iso(event.time), "jobId": job_id}


def log_objects(job, stdout: str, stderr: str) -> list[dict]:
    """The job's output as CyberGIS log entries: one per stream that has output."""
    when = iso(job.log_changed_at or job.updated_at)
    return [{"message": text, "createdAt": when, "jobId": job.id, "stream": stream}
            for stream, text in (("stdout", stdout), ("stderr", stderr)) if text]


def folder_object(job, user_id: str) -> dict:
    """A finished job's results as a CyberGIS folder (its id is the job's)."""
    return {"id": job.id, "name": None, "hpc": job.hpc, "userId": user_id,
            "isWritable": False, "createdAt": iso(job.finished_at or job.created_at),
            "updatedAt": iso(job.updated_at), "deletedAt": None}


def _base(user_id: str, job_id: str) -> dict:
    return {"id": job_id, "userId": user_id, "secretToken": None, "maintainer": MAINTAINER,
            "remoteExecutableFolder": None, "remoteDataFolder": None,
            "remoteResultFolder": None, "deletedAt": None, "env": {}}


def job_object(job, user_id: str, events: list | None = None,
               logs: list[dict] | None = None) -> dict:
    """A submitted job (the store's Job) as CyberGIS's job object."""
    out = _base(user_id, job.id)
    upload = {"type": "upload", "id": job.upload} if job.upload else None
    out.update({
        "slurmId": job.scheduler_id, "hpc": job.hpc, "status": job.status,
        "message": job.message,
        "localExecutableFolder": {"type": "git", "gitId": job.app},
        "localDataFolder": upload, "remoteDataFolder": upload,
        "remoteResultFolder": folder_object(job, user_id) if job.finished_at else None,
        "param": job.params or {}, "slurm": resources_to_slurm(job.resources or {}),
        "createdAt": iso(job.created_at), "updatedAt": iso(job.updated_at),
        "initializedAt": iso(job.submitted_at), "finishedAt": iso(job.finished_at),
        "isFailed": job.status in FAILED_STATUSES,
        "events": [event_object(e, job.id) for e in events or []],
        "logs": logs or [],
    })
    return out


def draft_object(draft: dict[str, Any], user_id: str) -> dict:
    """A created, not yet submitted job (a draft) as CyberGIS's job object."""
    out = _base(user_id, draft["id"])
    out.update({
        "slurmId": None, "hpc": draft.get("hpc"), "status": "draft", "message": None,
        "localExecutableFolder": draft.get("localExecutableFolder"),
        "localDataFolder": draft.get("localDataFolder"),
        "param": draft.get("param") or {}, "slurm": draft.get("slurm") or {},
        "createdAt": draft.get("createdAt"), "updatedAt": draft.get("updatedAt"),
        "initializedAt": None, "finishedAt": None, "isFailed": False,
        "events": [], "logs": [],
    })
    return out


def result_paths(entries: list[S.ResultEntry]) -> list[str]:
    """`GET /job/{id}/result-folder-content`: "/" and every folder and file under it."""
    return ["/"] + ["/" + e.path for e in entries]
