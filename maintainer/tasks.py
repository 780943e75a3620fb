"""rq tasks run by the maintainer's long-lived workers. Every one is idempotent:
running it twice, or after a crash halfway, moves a job on without doing anything twice."""
from __future__ import annotations

import logging
import os

from redis.exceptions import LockError

from hpcbridge.connectors.errors import ConnectorError, HPCUnavailable
from hpcbridge.connectors.spec import job_name
from hpcbridge.lifecycle import FINAL, IN_SCHEDULER
from hpcbridge.manifest import parse_manifest

from . import lifecycle as L
from .claims import claimed
from .logs import tail_logs
from .runtime import Runtime, current
from .staging import stage_in, stage_out

log = logging.getLogger("hpcbridge.maintainer")


def advance(job_id: str) -> str:
    """Move one job as far as it can go now (rq entry point)."""
    return drive(current(), job_id)


def drive(rt: Runtime, job_id: str) -> str:
    job = rt.store.get_job(job_id)
    if job is None or job.status in FINAL:
        return "nothing to do"
    if job.cancel_requested:
        return cancel(rt, job)
    if job.status == "queued" and not admit(rt, job):
        return "waiting for capacity"
    job = rt.store.get_job(job_id)
    if job.status == "staging":
        return stage_and_submit(rt, job)
    if job.status == "finishing":
        return finish(rt, job)
    return f"{job.status}: the poller follows it"


def admit(rt: Runtime, job) -> bool:
    """queued → staging if the HPC has room and the job is next in fair order."""
    hpc = rt.hpcs[job.hpc]
    if rt.store.hpc_state(job.hpc).draining:
        return False
    try:
        with rt.redis.lock(rt.key("admit", job.hpc), timeout=30, blocking_timeout=30):
            if job.id not in {j.id for j in next_to_admit(rt, hpc)}:
                return False
            return rt.store.transition(job.id, "staging", f"staging on {job.hpc}",
                                       expect=["queued"], worker=rt.worker_id)
    except LockError:  # the lock's holder died or is slow: the poller offers it again
        log.warning("admission lock of %s not acquired for job %s", job.hpc, job.id)
        return False


def next_to_admit(rt: Runtime, hpc) -> list:
    """The queued jobs the HPC has room for now, in fair order (lifecycle.fair_pick)."""
    in_scheduler = rt.store.active_jobs(hpc.id, IN_SCHEDULER)
    free = hpc.capacity - len(in_scheduler)
    if free <= 0:
        return []
    return L.fair_pick(rt.store.active_jobs(hpc.id, ["queued"]), in_scheduler, free)


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
    return _exclusively(rt, job.id, "staging", _stage_and_submit)


def _stage_and_submit(rt: Runtime, job) -> str:
    handler = rt.handlers[job.hpc]
    hpc = rt.hpcs[job.hpc]
    try:
        work_root = rt.run(handler.transport.resolve_work_root())
        workdir = L.remote_workdir(work_root, job.user, job.id)
        rt.store.update_job(job.id, remote_dir=workdir, worker=rt.worker_id)
        # idempotent submission: a worker that died after sbatch left the job there
        existing = rt.run(handler.find_by_name(job_name(job.id)))
        if existing:
            rt.store.transition(job.id, "submitted", f"found already submitted as {existing}",
                                expect=["staging"], scheduler_id=existing)
            return "found"
        app = rt.store.get_app(job.app)
        if app is None:
            rt.store.transition(job.id, "failed", f"app {job.app} is no longer registered")
            return "failed"
        upload = rt.store.get_upload(job.upload) if job.upload else None
        sent = rt.run(stage_in(handler.transport, job, app.path,
                               upload.path if upload else None, workdir))
        rt.store.add_event(job.id, "staged", f"staged {sent} items into {workdir}")
        if rt.store.get_job(job.id).cancel_requested:
            return cancel(rt, rt.store.get_job(job.id))
        spec = L.build_spec(job, parse_manifest(app.manifest).command(), workdir, hpc,
                            bool(upload))
        scheduler_id = rt.run(handler.submit(spec))
    except HPCUnavailable as exc:
        message = f"waiting for {job.hpc}: {exc}"
        rt.store.set_hpc_state(job.hpc, reachable=False, message=str(exc))
        rt.store.transition(job.id, "queued", message, event_type="waiting", expect=["staging"])
        return "hpc unavailable"
    except (ConnectorError, OSError, ValueError) as exc:
        rt.store.transition(job.id, "failed", f"staging failed: {exc}")
        return "failed"
    rt.store.set_hpc_state(job.hpc, reachable=True, message=None)
    moved = rt.store.transition(job.id, "submitted",
                                f"submitted to {job.hpc} as {scheduler_id}",
                                expect=["staging"], scheduler_id=scheduler_id)
    if not moved:  # cancelled meanwhile by another worker: take the submission back
        rt.run(handler.cancel(scheduler_id))
        return "cancelled"
    if rt.store.get_job(job.id).cancel_requested:
        return cancel(rt, rt.store.get_job(job.id))
    return "submitted"


def cancel(rt: Runtime, job) -> str:
    """Honour a cancel request in any state."""
    handler = rt.handlers[job.hpc]
    if job.status in ("queued", "staging"):
        # before submit: make sure it never reaches the scheduler (or take it back)
        try:
            found = rt.run(handler.find_by_name(job_name(job.id))) if job.status == "staging" \
                else None
            if found:
                rt.run(handler.cancel(found))
        except HPCUnavailable as exc:
            rt.store.add_event(job.id, "waiting", f"cancel waits for {job.hpc}: {exc}")
            return "hpc unavailable"
        rt.store.transition(job.id, "cancelled", "cancelled before it reached the scheduler",
                            expect=["queued", "staging"])
        return "cancelled"
    if job.status in ("submitted", "running") and job.scheduler_id:
        try:
            rt.run(handler.cancel(job.scheduler_id))
        except HPCUnavailable as exc:
            rt.store.add_event(job.id, "waiting", f"cancel waits for {job.hpc}: {exc}")
            return "hpc unavailable"
        rt.store.add_event(job.id, "cancel_sent",
                           f"asked {job.hpc} to cancel {job.scheduler_id}", touch=False)
        return "cancel sent"
    if job.status == "finishing":
        return finish(rt, job)
    return "nothing to cancel"


def finish(rt: Runtime, job) -> str:
    """finishing → succeeded | failed | cancelled: last logs, results home, quota, cleanup."""
    return _exclusively(rt, job.id, "finishing", _finish)


def _finish(rt: Runtime, job) -> str:
    handler = rt.handlers[job.hpc]
    hpc = rt.hpcs[job.hpc]
    rt.store.update_job(job.id, worker=rt.worker_id)
    try:
        if job.remote_dir:
            tail_logs(rt, handler, [job], rt.site.max_log_bytes_per_cycle, until_end=True)
            dest = os.path.join(rt.site.results_dir, job.id)
            files = rt.run(stage_out(handler.transport, job.remote_dir, dest))
            rt.store.add_event(job.id, "results", f"{files} result files collected",
                               touch=False)
    except HPCUnavailable as exc:
        rt.store.add_event(job.id, "waiting", f"collecting results waits for {job.hpc}: {exc}")
        return "hpc unavailable"
    except (ConnectorError, OSError) as exc:
        rt.store.add_event(job.id, "results_failed", f"could not collect results: {exc}")
    outcome = job.outcome or "failed"
    if job.elapsed_seconds:
        rt.store.charge(job.id, float(job.elapsed_seconds) * (job.cpus or 1),
                        rt.site.default_quota_seconds)
    moved = rt.store.transition(
        job.id, outcome, L.final_message(outcome, job.exit_code, job.scheduler_state),
        expect=["finishing"])
    if moved and job.remote_dir and (hpc.cleanup == "always" or
                                     (hpc.cleanup == "on_success" and outcome == "succeeded")):
        try:
            rt.run(handler.transport.rmtree(job.remote_dir))
        except ConnectorError as exc:
            log.warning("could not remove %s: %s", job.remote_dir, exc)
    return outcome
