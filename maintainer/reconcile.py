"""Reconciliation: every non-final job is moved on, whatever a dead worker or a lost rq task
left behind. Run by the poller when it takes an HPC's lease and every few cycles."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from hpcbridge.clock import aware, utcnow
from hpcbridge.connectors.errors import ConnectorError, HPCUnavailable
from hpcbridge.connectors.layout import EXIT_MARKER
from hpcbridge.connectors.spec import element_array_name, job_name
from hpcbridge.connectors.state import UNKNOWN, JobState
from hpcbridge.lifecycle import JobStatus

from .decisions import (
    WATCHED,
    Decision,
    ended_though_lost,
    exit_marker_status,
    on_lookup,
)
from .liveness import alive_workers

CLAIMED_STEPS = (JobStatus.STAGING, JobStatus.FINISHING)  # steps a worker holds a job in


def reconcile(rt, hpc, offer: Callable[..., None]) -> None:
    """Hand to the pool (`offer(job_id, hpc_id, force=...)`) the jobs left in staging or
    finishing by a dead worker, and those whose task died: untouched for
    Maintainer.stale_task_timeouts worker timeouts. (Queued jobs an rq task was lost for —
    Redis restarted — are offered by the poller's admission every cycle.) An ended sweep
    whose HPC folder was not dealt with yet (a worker died after its last element, the
    HPC was away) is offered as one of its elements: its task cleans the folder
    (tasks.clean_up_sweep)."""
    store = rt.store
    stale = dt.timedelta(seconds=rt.site.worker_timeout * rt.tuning.stale_task_timeouts)
    now = utcnow()
    alive = alive_workers(rt)
    for job in store.active_jobs(hpc.id, CLAIMED_STEPS):
        if job.worker not in alive:
            store.add_event(job.id, "resumed",
                            f"resumed by {rt.worker_id} (worker {job.worker} is gone)",
                            touch=True)
            store.update_job(job.id, worker=rt.worker_id)
            offer(job.id, hpc.id, force=True)
        elif now - aware(job.updated_at) > stale:
            offer(job.id, hpc.id)
    for _sweep_id, element_id in store.sweeps_to_clean(hpc.id):
        offer(element_id, hpc.id)


def resolve_unseen(rt, hpc, job, unseen_seconds: float, offer: Callable[..., None],
                   by_id: JobState | None = None, nameless_seconds: float = 0.0) -> str | None:
    """A watched job the scheduler no longer shows under its id (or shows another job
    under it): look it up by name and act (decisions.on_lookup) — followed under the id
    its name has now, moved on by its own record, or failed as lost; never left `running`
    for good. The status it was moved to, if any. A lookup that fails raises (unknown:
    ask again)."""
    found = _find(rt, rt.handlers[hpc.id], job)
    decision = on_lookup(job.status, job.scheduler_id, found, hpc.scheduler, unseen_seconds,
                         rt.tuning.lost_after_seconds, by_id, nameless_seconds)
    if decision.status == JobStatus.FAILED:  # lost, unless it ran to its end all the same
        decision = _ended_anyway(rt, hpc, job) or decision
    if decision.status is None:
        if decision.fields:
            rt.store.update_job(job.id, **decision.fields)
            rt.store.add_event(job.id, "scheduler_id", decision.message)
        return None
    return move_on(rt, hpc, job, decision, offer)


def move_on(rt, hpc, job, decision: Decision, offer: Callable[..., None]) -> str | None:
    """A watched job moved as `decision` says (the poller's status answers and the lookups
    by name): a job that ended without ever being seen running is recorded as started
    first, and one now `finishing` is offered at once for collection. The status it was
    moved to, if any."""
    if decision.status == JobStatus.FINISHING and job.status == JobStatus.SUBMITTED:
        # it ran and ended between two looks: record that it started
        rt.store.transition(job.id, JobStatus.RUNNING, f"running on {hpc.scheduler}",
                            expect=[JobStatus.SUBMITTED])
    moved = rt.store.transition(job.id, decision.status, decision.message,
                                expect=WATCHED, **(decision.fields or {}))
    if moved and decision.status == JobStatus.FINISHING:
        offer(job.id, hpc.id, force=True)
    return decision.status if moved else None


def _ended_anyway(rt, hpc, job) -> Decision | None:
    """A job the scheduler lost may have run to its end all the same: its exit marker
    (written by the batch script's EXIT trap) says so, and how. A missing or unreadable
    marker: it is lost. A connection error raises (unknown: ask again)."""
    if not job.remote_dir:
        return None
    try:
        data = rt.run(rt.handlers[hpc.id].transport.read_range(
            f"{job.remote_dir}/{EXIT_MARKER}", 0, 16))
    except HPCUnavailable:
        raise
    except ConnectorError:  # the job's own file unreadable (or not a file): no proof
        return None
    code = exit_marker_status(data)
    return None if code is None else ended_though_lost(code, job.scheduler_id, hpc.scheduler)


def _find(rt, handler, job) -> JobState | None:
    """The record the scheduler keeps under a job's name: the one under the job's own id
    if there is one, else the first (an array element: its array's id with its task id,
    state not known). A handler without find_states_by_name answers the
    id only (state not known)."""
    if job.sweep_id and "_" in (job.scheduler_id or ""):
        # its array's name and its task id in that array (a sweep cut by MaxArraySize)
        name = element_array_name(job.sweep_id, job.sweep_index, job.scheduler_id)
        task = job.scheduler_id.rpartition("_")[2]
        array_id = rt.run(handler.find_many_by_name([name])).get(name)
        return JobState(f"{array_id}_{task}", UNKNOWN) if array_id else None
    name = job_name(job.id)
    if hasattr(handler, "find_states_by_name"):
        states = rt.run(handler.find_states_by_name(name))
        return states.get(job.scheduler_id) or next(iter(states.values()), None)
    found = rt.run(handler.find_by_name(name))
    return JobState(found, UNKNOWN) if found else None
