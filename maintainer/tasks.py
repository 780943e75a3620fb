"""rq tasks run by the maintainer's long-lived workers. Every one is idempotent:
running it twice, or after a crash halfway, moves a job on without doing anything twice."""
from __future__ import annotations

import datetime as dt
import logging

from hpcbridge import joblog
from hpcbridge.clock import aware, utcnow
from hpcbridge.connectors.errors import ConnectorError, HPCUnavailable, SchedulerError
from hpcbridge.connectors.layout import SweepDir, WorkDir
from hpcbridge.connectors.spec import job_name
from hpcbridge.lifecycle import FINAL, JobStatus
from hpcbridge.manifest import ManifestError
from hpcbridge.taskqueue import TASK_TIMEOUT_SECONDS

from . import batch, claims, sweeps
from . import cancel as cancels
from .claims import claimed
from .decisions import RETRY_LOCAL, WAIT, WAIT_UNHEALTHY, final_message, on_error
from .jobspec import spec_for
from .logs import tail_logs
from .runtime import Runtime, current
from .staging import inputs, stage_in, stage_out

log = logging.getLogger("hpcbridge.maintainer")
S = JobStatus
# a whole stage-in or stage-out: each of its calls has the connectors' own deadline (a
# transfer: while it makes progress); this bounds the sum, within the rq task's limit
TRANSFER_TIMEOUT_SECONDS = TASK_TIMEOUT_SECONDS - 120
# an ended sweep whose elements' folders are still there is looked at again until this long
# after its end (an element's own clean-up may still be under way); then they are kept
SWEEP_CLEANUP_GRACE_SECONDS = 600


def advance(job_id: str) -> str:
    """Move one job as far as it can go now (rq entry point). Nothing escapes: whatever
    went wrong is logged, and the job is offered again by the poller's reconciliation."""
    try:
        return drive(current(), job_id)
    except Exception as exc:
        log.exception("advancing job %s", job_id)
        return f"error: {type(exc).__name__}: {exc}"


@joblog.scoped  # the job bound below is this call's only
def drive(rt: Runtime, job_id: str) -> str:
    job = rt.store.get_job(job_id)
    if job is None:
        return "nothing to do"
    joblog.bind(job)  # this task's log lines name the job, its user, HPC and worker
    if job.status in FINAL:  # reconciliation offers an ended sweep's element: its folder
        return clean_up_sweep(rt, job) if job.sweep_id else "nothing to do"
    if job.cancel_requested:
        return cancel(rt, job)
    if job.sweep_id and getattr(rt.handlers[job.hpc], "supports_arrays", False) and \
            job.status in (S.QUEUED, S.STAGING):
        return sweeps.advance(rt, job)  # with its sweep: one job array
    if job.status == S.QUEUED:
        return batch.advance_queued(rt, job)
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
    except ConnectorError as exc:  # refused by the scheduler: said, and tried again later
        rt.store.add_event(job.id, "cancel_failed", f"the cancel was refused: {exc}")
        return "cancel refused"


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
        work_root = rt.work_root(job.hpc)
        workdir = WorkDir.of(work_root, job.user, job.id)
        rt.store.update_job(job.id, remote_dir=workdir.path, worker=rt.worker_id)
        if job.submit_attempted_at:
            # an sbatch was tried (a worker died, or its answer was lost): the scheduler
            # may have the job. A lookup that fails raises: unknown, ask again later.
            existing = rt.run(handler.find_by_name(job_name(job.id)))
            if existing:
                rt.store.transition(job.id, S.SUBMITTED, f"found already submitted as "
                                    f"{existing}", expect=[S.STAGING], scheduler_id=existing)
                return "found"
        app = rt.store.get_app(job.app)
        upload = rt.store.get_upload(job.upload) if job.upload else None
        # built before staging: a job that cannot run stages nothing
        spec = spec_for(job, app, workdir, rt.hpcs[job.hpc], bool(upload))
        app_path, upload_path = inputs(rt.site.artifacts, app.id,
                                       upload.id if upload else None)
        sent = rt.run(stage_in(handler.transport, job, app_path, upload_path, workdir),
                      timeout=TRANSFER_TIMEOUT_SECONDS)
        rt.store.add_event(job.id, "staged", f"staged {sent} items into {workdir.path}")
        if rt.store.get_job(job.id).cancel_requested:
            return cancel(rt, rt.store.get_job(job.id))
        # recorded before sbatch: from now on only a lookup by name can tell
        rt.store.update_job(job.id, submit_attempted_at=utcnow())
        scheduler_id = rt.run(handler.submit(spec))
    except ManifestError as exc:
        rt.store.transition(job.id, S.FAILED, exc.message)
        return "failed"
    except Exception as exc:  # every error has its class (decisions.on_error)
        return _staging_failed(rt, job, exc)
    return _submitted(rt, job, scheduler_id)


def _staging_failed(rt: Runtime, job, exc: Exception) -> str:
    """The HPC's trouble sends the job back to the queue to wait (offered again by the
    poller: every Maintainer.resend_seconds, at once when the HPC is back); the job's own
    ends it with the reason."""
    action = on_error(exc)
    if action in (WAIT, WAIT_UNHEALTHY):
        hpc_unavailable(rt, job.hpc, exc)
        rt.store.transition(job.id, S.QUEUED, f"waiting for {job.hpc}: {exc}",
                            event_type="waiting", expect=[S.STAGING])
        return "hpc unavailable"
    if isinstance(exc, SchedulerError):
        message = str(exc)  # "sbatch refused the job: …": the scheduler's own words
    elif isinstance(exc, (ConnectorError, OSError, ValueError)):
        message = f"staging failed: {exc}"
    else:  # a bug, not the job's fault; still the job must not stay in staging for good
        log.exception("staging %s", job.id)
        message = f"staging failed: {type(exc).__name__}: {exc}"
    rt.store.transition(job.id, S.FAILED, message, expect=[S.STAGING])
    return "failed"


def hpc_unavailable(rt: Runtime, hpc: str, exc: BaseException) -> None:
    """Record why an HPC cannot be used now: unreachable, with the reason (and for a site
    misconfiguration, that an admin must act), so the admin sees it in GET /hpcs."""
    message = str(exc)
    if getattr(exc, "site_misconfigured", False):
        message = f"misconfigured (an administrator must fix it): {message}"
    rt.store.set_hpc_state(hpc, reachable=False, message=message, checked_at=utcnow())


def _submitted(rt: Runtime, job, scheduler_id: str) -> str:
    """Record a submission; take it back if the job was cancelled meanwhile."""
    rt.store.set_hpc_state(job.hpc, reachable=True, message=None)
    moved = rt.store.transition(job.id, S.SUBMITTED, f"submitted to {job.hpc} as {scheduler_id}",
                                expect=[S.STAGING], scheduler_id=scheduler_id)
    if not moved:  # cancelled meanwhile by another worker: take the submission back
        try:
            rt.run(rt.handlers[job.hpc].cancel(scheduler_id))
        except ConnectorError as exc:
            rt.store.add_event(job.id, "cancel_failed", f"could not take back "
                               f"{scheduler_id}: {exc}", touch=False)
        return "cancelled"
    if rt.store.get_job(job.id).cancel_requested:
        return cancel(rt, rt.store.get_job(job.id))
    return "submitted"


def finish(rt: Runtime, job) -> str:
    """finishing → succeeded | failed | cancelled: last logs, results home, quota, cleanup."""
    return _exclusively(rt, job.id, S.FINISHING, _finish)


def _finish(rt: Runtime, job) -> str:
    rt.store.update_job(job.id, worker=rt.worker_id)
    try:
        collected = _collect(rt, job)
    except Exception as exc:  # every error has its class (decisions.on_error)
        action = on_error(exc)
        if action in (WAIT, WAIT_UNHEALTHY):
            if action == WAIT_UNHEALTHY:
                hpc_unavailable(rt, job.hpc, exc)
            rt.store.add_event(job.id, "waiting",
                               f"collecting results waits for {job.hpc}: {exc}")
            return "hpc unavailable"
        if action == RETRY_LOCAL:
            # this machine's trouble: the job stays finishing, reconciliation offers it
            # again (Maintainer.stale_task_timeouts); the HPC copy stays untouched
            rt.store.add_event(job.id, "results_waiting",
                               f"results not collected yet, tried again later: {exc}")
            return "results waiting"
        return _end(rt, job, f"results could not be collected: {exc}")
    return _end(rt, job, None, collected)


def _collect(rt: Runtime, job):
    """Last logs and the results home; None for a job that never had a work dir."""
    if not job.remote_dir:
        return None
    handler = rt.handlers[job.hpc]
    tail_logs(rt, handler, [job], until_end=True)
    # swapped in whole only after a verified copy (ArtifactStore.writing)
    with rt.site.artifacts.writing("results", job.id) as dest:
        collected = rt.run(stage_out(handler.transport, WorkDir(job.remote_dir), dest),
                           timeout=TRANSFER_TIMEOUT_SECONDS)
    message = f"{collected.files} result files collected"
    if collected.skipped:
        message += (f"; {len(collected.skipped)} left out (not regular files: links, "
                    f"pipes…): {', '.join(collected.skipped[:5])}")
    if collected.unreadable:
        message += f"; unreadable: {'; '.join(collected.unreadable)}"
    rt.store.add_event(job.id, "results", message, touch=False)
    return collected


def _end(rt: Runtime, job, problem: str | None, collected=None) -> str:
    """finishing → the outcome the scheduler gave, unless the results could not be
    collected (`problem`): a job is `succeeded` only with its results home. The remote copy
    is removed (per the HPC's cleanup) only after a complete, verified collection."""
    outcome = job.outcome or S.FAILED.value
    message = final_message(outcome, job.exit_code, job.scheduler_state)
    if problem:
        outcome = S.FAILED.value if outcome == S.SUCCEEDED else outcome
        message = (f"the job ended but its {problem}" if job.outcome == S.SUCCEEDED
                   else f"{message}; {problem}")
    if job.elapsed_seconds:
        rt.store.charge(job.id, float(job.elapsed_seconds) * (job.cpus or 1),
                        rt.site.default_quota_seconds)
    moved = rt.store.transition(job.id, outcome, message, expect=[S.FINISHING])
    complete = problem is None and (collected is None or not collected.unreadable)
    if moved and complete:
        _clean_up(rt, job, outcome)
    if moved and job.sweep_id:  # after its own folder: the element that ends a sweep last
        clean_up_sweep(rt, job)
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


def clean_up_sweep(rt: Runtime, job) -> str:
    """An ended sweep's folder on the HPC (layout.SweepDir: app, data, elements/) removed
    once, by one worker (a Redis claim on the sweep; Sweep.cleaned_at records it), as the
    HPC's `cleanup` setting says for the sweep as a whole, and only when none of its
    elements' own folders is left in it: each element's is removed after a complete,
    verified collection of its results (_clean_up), so one left holds results not brought
    home, or a failed element's files the setting keeps. Called by the finishing task of
    every element after its own clean-up (the last one finds the sweep ended and the
    folders gone) and by reconciliation's offer (maintainer/reconcile.py: an element of
    each ended, not yet cleaned sweep) after a crash or a failure. Never raises: it never
    fails a job."""
    key = f"sweep-cleanup-{job.sweep_id}"
    try:
        sweep = rt.store.get_sweep(job.sweep_id)
        if sweep is None or sweep.ended_at is None or sweep.cleaned_at is not None \
                or not sweep.remote_dir:
            return "nothing to do"
        if not claims.take(rt, key):
            return "sweep folder: another worker has it"
    except Exception as exc:  # the database or Redis away: reconciliation offers it again
        log.warning("sweep %s: its folder is looked at later: %s", job.sweep_id, exc)
        return "sweep folder: later"
    try:
        return _clean_up_sweep(rt, rt.store.get_sweep(sweep.id), job)
    except ConnectorError as exc:  # classified like a job's clean-up: said, tried again
        log.warning("sweep %s: could not remove %s: %s", sweep.id, sweep.remote_dir, exc)
        try:  # said once: reconciliation tries again as long as the HPC is away
            if "cleanup_failed" not in {e.type for e in rt.store.events(job.id)}:
                rt.store.add_event(job.id, "cleanup_failed", f"the sweep's folder "
                                   f"{sweep.remote_dir} was not removed yet (tried again "
                                   f"later): {exc}", touch=False)
        except Exception:
            log.exception("sweep %s: event not recorded", sweep.id)
        return "sweep folder: not removed yet"
    except Exception:
        log.exception("sweep %s: cleaning its folder", sweep.id)
        return "sweep folder: error"
    finally:
        claims.release(rt, key)


def _clean_up_sweep(rt: Runtime, sweep, job) -> str:
    if sweep.cleaned_at is not None:
        return "nothing to do"
    cleanup = rt.hpcs[sweep.hpc].cleanup
    counts = rt.store.sweep_counts([sweep.id])[sweep.id]
    if cleanup == "never" or (cleanup == "on_success" and set(counts) - {S.SUCCEEDED}):
        rt.store.sweep_cleaned(sweep.id)  # kept, as a job's work dir would be
        return "sweep folder kept (cleanup setting)"
    transport = rt.handlers[sweep.hpc].transport
    folder = SweepDir(sweep.remote_dir)
    left = rt.run(_elements_left(transport, folder))
    if left:
        ended = dt.timedelta(seconds=SWEEP_CLEANUP_GRACE_SECONDS)
        if utcnow() - aware(sweep.ended_at) < ended:
            return "sweep folder: elements' folders still there, looked at again later"
        rt.store.sweep_cleaned(sweep.id)
        log.info("sweep %s: %s kept: the folders of elements %s are still in it (results "
                 "not collected completely, or kept for a failed element)", sweep.id,
                 folder.path, ", ".join(left[:10]))
        return "sweep folder kept (elements' folders left in it)"
    rt.run(transport.rmtree(folder.path), timeout=TRANSFER_TIMEOUT_SECONDS)
    if rt.store.sweep_cleaned(sweep.id):
        rt.store.add_event(job.id, "sweep_cleaned", f"the sweep has ended: its folder "
                           f"{folder.path} was removed", touch=False)
    return "sweep folder removed"


async def _elements_left(transport, folder: SweepDir) -> list[str]:
    """The names of the element folders still in the sweep's folder."""
    try:
        entries = await transport.listdir(folder.elements)
    except FileNotFoundError:  # RemoteFileNotFound too: never unpacked, or removed
        return []
    return sorted(e.path for e in entries if e.is_dir and "/" not in e.path)
