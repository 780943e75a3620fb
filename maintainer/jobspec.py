"""A stored job as the scheduler and the job itself see it (pure): its JobSpec, the
environment its parameters reach it through, and its job.json."""
from __future__ import annotations

import json
from types import SimpleNamespace

from hpcbridge.connectors.layout import RESULT_DIR, WorkDir
from hpcbridge.connectors.spec import JobSpec, element_array_name, job_name
from hpcbridge.manifest import ManifestError, parse_manifest

DEFAULT_TIME_MINUTES = 10  # a job whose app sets no time rule


def job_environment(job_id: str, workdir: WorkDir, params: dict,
                    has_data: bool) -> dict[str, str]:
    """Parameters reach the job as environment variables (quoted when rendered)."""
    env = {
        "HPCBRIDGE_JOB_ID": job_id,
        "HPCBRIDGE_WORKDIR": workdir.path,
        "HPCBRIDGE_RESULT_DIR": workdir.result,
        "HPCBRIDGE_JOB_JSON": workdir.job_json,
        "HPCBRIDGE_DATA_DIR": workdir.data if has_data else "",
    }
    for name, value in params.items():
        env[f"param_{name}"] = json.dumps(value) if isinstance(value, bool) else str(value)
    return env


def build_spec(job, command: str, workdir: WorkDir, hpc, has_data: bool) -> JobSpec:
    """The JobSpec of a stored job; `command` is the app manifest's (trusted) shell text."""
    resources = job.resources or {}
    return JobSpec(
        name=job_name(job.id), workdir=workdir.path, command=f"mkdir -p {RESULT_DIR}\n{command}",
        environment=job_environment(job.id, workdir, job.params or {}, has_data),
        partition=resources.get("partition") or hpc.default_partition,
        time_minutes=int(resources.get("time") or DEFAULT_TIME_MINUTES),
        cpus=int(resources.get("cpus") or 1), memory_mb=resources.get("memory"),
        gpus=int(resources.get("gpus") or 0))


def spec_for(job, app, workdir: WorkDir, hpc, has_data: bool) -> JobSpec:
    """The JobSpec of a job from its app's stored manifest. Raises ManifestError with the
    reason when it cannot be built (the app is gone, or its manifest or the job no longer
    fit the rules): such a job ends `failed`, it must not stay in `staging`."""
    if app is None:
        raise ManifestError(f"app {job.app} is no longer registered")
    try:
        command = parse_manifest(app.manifest).command()
        return build_spec(job, command, workdir, hpc, has_data)
    except ManifestError as exc:
        raise ManifestError(f"the manifest of app {job.app} is no longer valid: {exc}",
                            exc.details) from exc
    except Exception as exc:  # anything a stored job may hold
        reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        raise ManifestError(f"cannot build the job: {reason}") from exc


def scheduler_name(job) -> str:
    """The name the scheduler knows a job by: an array element's is its array's (its
    sweep's, or that of the sweep's array at an offset: spec.chunk_name)."""
    if job.sweep_id and "_" in (job.scheduler_id or ""):
        return element_array_name(job.sweep_id, job.sweep_index, job.scheduler_id)
    return job_name(job.id)


def sweep_spec(sweep, app, folder: str, hpc) -> JobSpec:
    """The part of a sweep's array script all its elements share (its resources, the
    app's command); each element's own variables are sourced from its params file.
    Raises ManifestError as spec_for does."""
    if app is None:
        raise ManifestError(f"app {sweep.app} is no longer registered")
    try:
        command = parse_manifest(app.manifest).command()
        shared = SimpleNamespace(id=sweep.id, resources=sweep.resources, params={})
        spec = build_spec(shared, command, WorkDir(folder), hpc, False)
    except ManifestError as exc:
        raise ManifestError(f"the manifest of app {sweep.app} is no longer valid: {exc}",
                            exc.details) from exc
    except Exception as exc:  # anything a stored sweep may hold
        raise ManifestError(f"cannot build the sweep: {exc}") from exc
    return spec.model_copy(update={"environment": {"HPCBRIDGE_SWEEP_ID": sweep.id}})


def job_json(job) -> bytes:
    """The job's request, as the job reads it from its work dir."""
    return json.dumps({"id": job.id, "user": job.user, "app": job.app, "hpc": job.hpc,
                       "params": job.params, "resources": job.resources}, indent=2).encode()
