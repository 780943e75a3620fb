"""The batched submit path: many queued jobs of one HPC admitted, staged and submitted by
one task (issue #24). Per round up to Maintainer.submit_batch_size jobs, in fair order:

- admitted together (one transaction), each then claimed like a single job;
- the idempotency lookup only for the jobs with an sbatch attempt recorded, and then one
  lookup by name for all of them (handler.find_many_by_name);
- staged concurrently over one SFTP channel, requests pipelined (staging.stage_many);
- the attempt recorded for all, then one command submits them all (submit_scripts);
- recorded together, a job cancelled meanwhile taken back as for a single job.

Each job's failure is its own, classified as for a single job (decisions.on_error)."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from hpcbridge.clock import utcnow
from hpcbridge.connectors.errors import ConnectorError, SchedulerError
from hpcbridge.connectors.layout import WorkDir
from hpcbridge.connectors.spec import job_name
from hpcbridge.lifecycle import JobStatus
from hpcbridge.manifest import ManifestError
from hpcbridge.taskqueue import clear_wake, request_wake

from . import claims, tasks
from .admission import admit_batch, admit_next
from .decisions import WAIT, WAIT_UNHEALTHY, on_error
from .jobspec import spec_for
from .runtime import REDIS_DOWN, current
from .staging import Staging, inputs, jobs_archive, packable_app, stage_many, stage_packed

log = logging.getLogger("hpcbridge.maintainer")
S = JobStatus


def wake(hpc_id: str) -> str:
    """The HPC's wake (rq entry point, hpcbridge.taskqueue.request_wake): its key cleared
    first, so that a job created from now on asks for a new wake, then one round of its
    queued jobs (`advance_hpc`). Nothing escapes: the poller offers queued jobs anyway."""
    try:
        rt = current()
        clear_wake(rt.redis, rt.site.queue_prefix, hpc_id)
        return advance_hpc(rt, hpc_id)
    except Exception as exc:
        log.exception("waking %s", hpc_id)
        return f"error: {type(exc).__name__}: {exc}"


def advance_hpc(rt, hpc_id: str) -> str:
    """One round of the HPC's queued jobs (`_round`): how each admitted job fared."""
    laps = Laps()
    admitted, outcomes = _round(rt, hpc_id, admit_next(rt, hpc_id, rt.tuning.submit_batch_size),
                                laps)
    if not admitted:
        return "nothing admissible"
    counts = Counter(outcomes.values())
    return ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "claimed elsewhere"


def advance_queued(rt, job) -> str:
    """A queued job's task: admit a batch of its HPC's queued jobs (this one among them
    if it is next in order) and stage and submit the batch; this job's outcome."""
    laps = Laps()
    admitted, outcomes = _round(rt, job.hpc, admit_batch(rt, job, rt.tuning.submit_batch_size),
                                laps)
    if job.id in outcomes:
        return outcomes[job.id]
    return "staging" if job.id in admitted else "waiting for capacity"


class Laps:
    """Where a batch's time goes: seconds per step, each call closing the step named."""

    def __init__(self):
        self.at, self.spent = time.monotonic(), {}

    def __call__(self, step: str) -> None:
        now = time.monotonic()
        self.spent[step] = self.spent.get(step, 0.0) + now - self.at
        self.at = now

    def __str__(self) -> str:
        return ", ".join(f"{step} {seconds:.3f} s" for step, seconds in self.spent.items())


def _round(rt, hpc_id: str, admission: tuple[list[str], bool], laps: Laps
           ) -> tuple[list[str], dict[str, str]]:
    """After an admission (the ids moved, whether more had room): another wake asked for
    if more had room (so that the other worker admits and stages the next batch while
    this one submits); the admitted jobs claimed, those this worker holds staged and
    submitted, released. (the ids admitted, job id → outcome)."""
    admitted, more = admission
    if more:
        _rearm(rt, hpc_id)
    if not admitted:
        return [], {}
    laps("admit")
    mine = claims.take_many(rt, admitted)
    laps("claim")
    try:
        return admitted, submit_batch(rt, hpc_id, mine, laps) if mine else {}
    finally:
        claims.release_many(rt, mine)
        laps("release")
        log.info("batch of %d on %s: %s", len(mine), hpc_id, laps)


def _rearm(rt, hpc_id: str) -> None:
    """More jobs have room: a wake for the next batch (a worker free takes it now)."""
    try:
        request_wake(rt.redis, rt.site.queue_prefix, hpc_id)
    except REDIS_DOWN as exc:  # the poller offers the rest
        log.warning("could not wake the workers of %s again: %s", hpc_id, exc)


def submit_batch(rt, hpc_id: str, job_ids: list[str], laps: Laps | None = None
                 ) -> dict[str, str]:
    """staging → submitted for claimed jobs of one HPC; job id → outcome ("submitted",
    "found", "failed", "cancelled", "hpc unavailable")."""
    out: dict[str, str] = {}
    laps = laps or Laps()
    handler = rt.handlers[hpc_id]
    stored = rt.store.get_jobs(job_ids)
    jobs = [stored[i] for i in job_ids if i in stored and stored[i].status == S.STAGING]
    try:
        work_root = rt.work_root(hpc_id)
        jobs = _found_already(rt, handler, jobs, out)
    except Exception as exc:  # every error has its class (decisions.on_error)
        failed_all(rt, hpc_id, jobs, exc, out)
        return out
    items = _plan(rt, handler, jobs, work_root, out)
    laps("plan")
    if not items:
        return out
    try:
        sent = rt.run(_stage(rt, handler.transport, work_root, [i for i, _ in items]),
                      timeout=tasks.TRANSFER_TIMEOUT_SECONDS)
    except Exception as exc:
        failed_all(rt, hpc_id, [i.job for i, _ in items], exc, out)
        return out
    finally:
        laps("stage")
    staged = []
    for (item, spec), result in zip(items, sent):
        if isinstance(result, Exception):
            failed_all(rt, hpc_id, [item.job], result, out)
        else:
            staged.append((item, spec, result))
    return _submit(rt, handler, hpc_id, staged, out, laps)


async def _stage(rt, transport, root: str, items: list[Staging]) -> list[int | Exception]:
    """Per job: files sent, or what stopped its staging. Jobs without an upload whose app
    is small travel in one archive; the others are copied over pipelined SFTP."""
    apps: dict[str, list | None] = {}
    packed, copied = [], []
    for k, item in enumerate(items):
        if item.app_path not in apps:
            apps[item.app_path] = await asyncio.to_thread(packable_app, item.app_path)
        app = apps[item.app_path]
        (packed if app is not None and not item.upload_path else copied).append((k, app))
    sent: list[int | Exception] = [0] * len(items)
    if packed:
        try:
            archive = jobs_archive(root, [(items[k], app) for k, app in packed])
            await stage_packed(transport, root, archive)
            for k, app in packed:
                sent[k] = len(app) + 1
        except Exception as exc:  # classified per job by the caller
            for k, _ in packed:
                sent[k] = exc
    if copied:
        results = await stage_many(transport, [items[k] for k, _ in copied],
                                   rt.tuning.staging_concurrency)
        for (k, _), result in zip(copied, results):
            sent[k] = result
    return sent


def _found_already(rt, handler, jobs, out: dict[str, str]) -> list:
    """The jobs an sbatch was attempted for, looked up by name all at once (a lookup that
    fails raises: unknown, asked again later); those found recorded. The rest."""
    attempted = {job_name(j.id): j for j in jobs if j.submit_attempted_at}
    if not attempted:
        return jobs
    found = rt.run(handler.find_many_by_name(list(attempted)))
    moves = {attempted[name].id: (f"found already submitted as {scheduler_id}",
                                  {"scheduler_id": scheduler_id})
             for name, scheduler_id in found.items()}
    for job_id in rt.store.transition_many(S.SUBMITTED, moves, expect=[S.STAGING]):
        out[job_id] = "found"
    return [j for j in jobs if j.id not in moves]


def _plan(rt, handler, jobs, work_root: str, out: dict[str, str]) -> list:
    """(Staging, JobSpec) of each job that can run; a job whose spec cannot be built
    fails now and stages nothing."""
    items, failed, dirs = [], {}, {}
    apps, uploads = {}, {}
    for job in jobs:
        workdir = WorkDir.of(work_root, job.user, job.id)
        dirs[job.id] = {"remote_dir": workdir.path, "worker": rt.worker_id}
        if job.app not in apps:
            apps[job.app] = rt.store.get_app(job.app)
        upload = None
        if job.upload:
            upload = uploads.setdefault(job.upload, rt.store.get_upload(job.upload))
        try:
            spec = spec_for(job, apps[job.app], workdir, rt.hpcs[job.hpc], bool(upload))
        except ManifestError as exc:
            failed[job.id] = (exc.message, {})
            continue
        items.append((Staging(job, *inputs(rt.site.artifacts, job.app, upload.id if upload else None),
                              workdir, handler.batch_script(spec)), spec))
    rt.store.update_jobs(dirs)
    for job_id in rt.store.transition_many(S.FAILED, failed, expect=[S.STAGING]):
        out[job_id] = "failed"
    return items


def _submit(rt, handler, hpc_id: str, staged: list, out: dict[str, str],
            laps: Laps) -> dict[str, str]:
    """Record the attempt, submit all with one command, record what the scheduler said."""
    rt.store.add_events((item.job.id, "staged", f"staged {sent} items into "
                         f"{item.workdir.path}") for item, _, sent in staged)
    current = rt.store.get_jobs(item.job.id for item, _, _ in staged)
    ready = []
    for item, spec, _ in staged:
        job = current.get(item.job.id)
        if job is not None and job.cancel_requested:
            out[job.id] = tasks.cancel(rt, job)
        else:
            ready.append((item, spec))
    if not ready:
        return out
    # recorded before sbatch: from now on only a lookup by name can tell
    rt.store.update_jobs({item.job.id: {"submit_attempted_at": utcnow()} for item, _ in ready})
    laps("attempt")
    try:
        answers = rt.run(handler.submit_scripts([spec for _, spec in ready]))
    except Exception as exc:
        failed_all(rt, hpc_id, [item.job for item, _ in ready], exc, out)
        return out
    finally:
        laps("sbatch")
    submitted = {}
    for (item, _), answer in zip(ready, answers):
        if isinstance(answer, Exception):
            failed_all(rt, hpc_id, [item.job], answer, out)
        else:
            submitted[item.job.id] = answer
    _record(rt, hpc_id, submitted, out)
    laps("record")
    return out


def _record(rt, hpc_id: str, submitted: dict[str, str], out: dict[str, str]) -> None:
    """Record the submissions; take back those cancelled meanwhile (tasks._submitted)."""
    if not submitted:
        return
    rt.store.set_hpc_state(hpc_id, reachable=True, message=None)
    moves = {job_id: (f"submitted to {hpc_id} as {sid}", {"scheduler_id": sid})
             for job_id, sid in submitted.items()}
    moved = set(rt.store.transition_many(S.SUBMITTED, moves, expect=[S.STAGING]))
    lost = [sid for job_id, sid in submitted.items() if job_id not in moved]
    if lost:  # cancelled meanwhile by another worker: take the submissions back
        try:
            rt.run(rt.handlers[hpc_id].cancel_many(lost))
        except ConnectorError as exc:
            log.warning("could not take back %s: %s", lost, exc)
    current = rt.store.get_jobs(moved)
    for job_id in submitted:
        out[job_id] = "submitted" if job_id in moved else "cancelled"
        if job_id in moved and current[job_id].cancel_requested:
            out[job_id] = tasks.cancel(rt, current[job_id])


def failed_all(rt, hpc_id: str, jobs, exc: Exception, out: dict[str, str]) -> None:
    """What tasks._staging_failed does for one job, for many: the HPC's trouble sends
    them back to the queue, their own ends them with the reason."""
    if not jobs:
        return
    action = on_error(exc)
    if action in (WAIT, WAIT_UNHEALTHY):
        tasks.hpc_unavailable(rt, hpc_id, exc)
        moves = {j.id: (f"waiting for {hpc_id}: {exc}", {}) for j in jobs}
        rt.store.transition_many(S.QUEUED, moves, expect=[S.STAGING], event_type="waiting")
        out.update({j.id: "hpc unavailable" for j in jobs})
        return
    if isinstance(exc, SchedulerError):
        message = str(exc)
    elif isinstance(exc, (ConnectorError, OSError, ValueError)):
        message = f"staging failed: {exc}"
    else:
        log.error("staging %d jobs: %s: %s", len(jobs), type(exc).__name__, exc)
        message = f"staging failed: {type(exc).__name__}: {exc}"
    rt.store.transition_many(S.FAILED, {j.id: (message, {}) for j in jobs}, expect=[S.STAGING])
    out.update({j.id: "failed" for j in jobs})
