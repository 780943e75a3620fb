"""rq tasks run by the maintainer's long-lived workers. Every one is idempotent:
running it twice, or after a crash halfway, moves a job on without doing anything twice."""
from __future__ import annotations

import logging
import os

from hpcbridge.connectors.errors import ConnectorError, HPCUnavailable
from hpcbridge.connectors.layout import WorkDir
from hpcbridge.connectors.spec import job_name
from hpcbridge.lifecycle import FINAL, JobStatus
from hpcbridge.manifest import ManifestError

from . import cancel as cancels
from .admission import admit
from .claims import claimed
from .decisions import final_message
from .jobspec import spec_for
from .logs import tail_logs
from .runtime import Runtime, current
from .staging import stage_in, stage_out

log = logging.getLogger("hpcbridge.maintainer")
S = JobStatus


def advance(job_id: str) -> str:
    """Move one job as far as it can go now (rq entry point)."""
    return drive(current(), job_id)


def drive(rt: Runtime, job_id: str) -> str:
    job = rt.store.get_job(job_id)
    if job is None or job.status in FINAL:
        return "nothing to do"
    if job.cancel_requested:
        return cancel(rt, job)
    if job.status == S.QUEUED and not admit(rt, job):
        return "waiting for capacity"
    job = rt.store.get_job(job_id)
    if job.status == S.STAGING:
        return stage_and_submit(rt, job)
    if job.status == S.FINISHING:
        return finish(rt, job)
    return f"{job.status}: the poller follows it"


def cancel(rt: Runtime, job) -> str:
    """Honour a cancel request in any state (cancel.send); a finishing job is finished."""
    if job.status == S.FINISHING:
        return finish(rt, job)
    try:
        return cancels.send(rt, job)
    except HPCUnavailable as exc:
        rt.store.add_event(job.id, "waiting", f"cancel waits for {job.hpc}: {exc}")
        return "hpc unavailable"


def _exclusively(rt: Runtime, job_id: str, status: str, step) -> str:
    """Run `step` on a job still in `status`, by one worker at a time (the same job may be
    enqueued twice)."""
    with claimed(rt, job_id) as mine:
        if not mine:
            return f"{status}: another worker has it"
        job = rt.store.get_job(job_id)
        if job is None or job.status != status:
            return f"{job.status if job else 'gone'}: already moved on"
        return step(rt, job)


def stage_and_submit(rt: Runtime, job) -> str:
    """staging → submitted."""
    return _exclusively(rt, job.id, S.STAGING, _stage_and_submit)


def _stage_and_submit(rt: Runtime, job) -> str:
    handler = rt.handlers[job.hpc]
    try:
        work_root = rt.run(handler.transport.resolve_work_root())
        workdir = WorkDir.of(work_root, job.user, job.id)
        rt.store.update_job(job.id, remote_dir=workdir.path, worker=rt.worker_id)
        # idempotent submission: a worker that died after sbatch left the job there
        existing = rt.run(handler.find_by_name(job_name(job.id)))
        if existing:
            rt.store.transition(job.id, S.SUBMITTED, f"found already submitted as {existing}",
                                expect=[S.STAGING], scheduler_id=existing)
            return "found"
        app = rt.store.get_app(job.app)
        upload = rt.store.get_upload(job.upload) if job.upload else None
        # built before staging: a job that cannot run stages nothing
        spec = spec_for(job, app, workdir, rt.hpcs[job.hpc], bool(upload))
        sent = rt.run(stage_in(handler.transport, job, app.path,
                               upload.path if upload else None, workdir))
        rt.store.add_event(job.id, "staged", f"staged {sent} items into {workdir.path}")
        if rt.store.get_job(job.id).cancel_requested:
            return cancel(rt, rt.store.get_job(job.id))
        scheduler_id = rt.run(handler.submit(spec))
    except HPCUnavailable as exc:
        rt.store.set_hpc_state(job.hpc, reachable=False, message=str(exc))
        rt.store.transition(job.id, S.QUEUED, f"waiting for {job.hpc}: {exc}",
                            event_type="waiting", expect=[S.STAGING])
        return "hpc unavailable"
    except ManifestError as exc:
        rt.store.transition(job.id, S.FAILED, exc.message)
        return "failed"
    except (ConnectorError, OSError, ValueError) as exc:
        rt.store.transition(job.id, S.FAILED, f"staging failed: {exc}")
        return "failed"
    return _submitted(rt, job, scheduler_id)


def _submitted(rt: Runtime, job, scheduler_id: str) -> str:
    """Record a submission; take it back if the job was cancelled meanwhile."""
    rt.store.set_hpc_state(job.hpc, reachable=True, message=None)
    moved = rt.store.transition(job.id, S.SUBMITTED, f"submitted to {job.hpc} as {scheduler_id}",
                                expect=[S.STAGING], scheduler_id=scheduler_id)
    if not moved:  # cancelled meanwhile by another worker: take the submission back
        rt.run(rt.handlers[job.hpc].cancel(scheduler_id))
        return "cancelled"
    if rt.store.get_job(job.id).cancel_requested:
        return cancel(rt, rt.store.get_job(job.id))
    return "submitted"


def finish(rt: Runtime, job) -> str:
    """finishing → succeeded | failed | cancelled: last logs, results home, quota, cleanup."""
    return _exclusively(rt, job.id, S.FINISHING, _finish)


def _finish(rt: Runtime, job) -> str:
    handler = rt.handlers[job.hpc]
    rt.store.update_job(job.id, worker=rt.worker_id)
    try:
        if job.remote_dir:
            tail_logs(rt, handler, [job], until_end=True)
            dest = os.path.join(rt.site.results_dir, job.id)
            files = rt.run(stage_out(handler.transport, WorkDir(job.remote_dir), dest))
            rt.store.add_event(job.id, "results", f"{files} result files collected",
                               touch=False)
    except HPCUnavailable as exc:
        rt.store.add_event(job.id, "waiting", f"collecting results waits for {job.hpc}: {exc}")
        return "hpc unavailable"
    except (ConnectorError, OSError) as exc:
        rt.store.add_event(job.id, "results_failed", f"could not collect results: {exc}")
    outcome = job.outcome or S.FAILED.value
    if job.elapsed_seconds:
        rt.store.charge(job.id, float(job.elapsed_seconds) * (job.cpus or 1),
                        rt.site.default_quota_seconds)
    moved = rt.store.transition(job.id, outcome,
                                final_message(outcome, job.exit_code, job.scheduler_state),
                                expect=[S.FINISHING])
    if moved:
        _clean_up(rt, job, outcome)
    return outcome


def _clean_up(rt: Runtime, job, outcome: str) -> None:
    """Remove the remote work dir as the HPC's `cleanup` setting says."""
    cleanup = rt.hpcs[job.hpc].cleanup
    if job.remote_dir and (cleanup == "always" or
                           (cleanup == "on_success" and outcome == S.SUCCEEDED)):
        try:
            rt.run(rt.handlers[job.hpc].transport.rmtree(job.remote_dir))
        except ConnectorError as exc:
            log.warning("could not remove %s: %s", job.remote_dir, exc)
