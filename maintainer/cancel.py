"""The one way a cancel request is honoured, used by the poller (each cycle, for the jobs
it watches) and by the rq task (when a cancelled job is handed to a worker)."""
from __future__ import annotations

import logging

from hpcbridge.connectors.errors import ConnectorError, HPCUnavailable
from hpcbridge.connectors.spec import array_task, chunk_name, job_name
from hpcbridge.lifecycle import JobStatus

from .decisions import WATCHED
from .throttle import Throttle

log = logging.getLogger("hpcbridge.maintainer")

S = JobStatus
BEFORE_SUBMIT = (S.QUEUED, S.STAGING)
CANCELS_PER_COMMAND = 500  # scheduler ids in one scancel


def send(rt, job) -> str:
    """One attempt to honour `job`'s cancel request; what was done.

    Before submission the job is made sure never to reach the scheduler and ends
    `cancelled`: if an sbatch was attempted (submit_attempted_at) the scheduler may hold it
    under its name, so it is looked up and taken back first (a lookup that fails raises:
    unknown, the cancel waits). In the scheduler's queue it is asked to stop, and the
    poller sees it end. A job that is `finishing` is left to finish (its outcome is known).
    Connector errors are raised: the caller decides how to wait for the HPC."""
    handler = rt.handlers[job.hpc]
    if job.status in BEFORE_SUBMIT:
        if job.submit_attempted_at or job.scheduler_id:
            take_back(rt, job)
        rt.store.transition(job.id, S.CANCELLED, "cancelled before it reached the scheduler",
                            expect=BEFORE_SUBMIT)
        return "cancelled"
    if job.status in WATCHED and job.scheduler_id:
        rt.run(handler.cancel(job.scheduler_id))
        rt.store.add_event(job.id, "cancel_sent",
                           f"asked {job.hpc} to cancel {job.scheduler_id}", touch=False)
        return "cancel sent"
    return "nothing to cancel"


def send_many(rt, jobs) -> None:
    """The cancel requests of jobs in the scheduler's queue, sent in one command."""
    jobs = [j for j in jobs if j.status in WATCHED and j.scheduler_id]
    if not jobs:
        return
    hpc = jobs[0].hpc
    rt.run(rt.handlers[hpc].cancel_many([j.scheduler_id for j in jobs]))
    rt.store.add_events([(j.id, "cancel_sent", f"asked {hpc} to cancel {j.scheduler_id}")
                         for j in jobs])


def take_back(rt, job, rounds: int = 3) -> list[str]:
    """Make sure no scheduler job of `job`'s name survives: look it up by name and cancel
    what is found, until a lookup finds nothing or only what was already cancelled (a
    handler without cancel-by-name: find_by_name answers one id at a time). The ids
    cancelled."""
    handler = rt.handlers[job.hpc]
    if job.sweep_id and getattr(handler, "supports_arrays", False):
        return _take_back_element(rt, handler, job)
    name = job_name(job.id)
    cancelled: list[str] = []
    for _ in range(rounds):
        found = rt.run(handler.find_by_name(name))
        if not found or found in cancelled:
            break
        rt.run(handler.cancel(found))
        cancelled.append(found)
        rt.store.add_event(job.id, "cancel_sent", f"asked {job.hpc} to cancel {found}, "
                           "submitted under this job's name", touch=False)
    return cancelled


def _take_back_element(rt, handler, job) -> list[str]:
    """An element of a sweep whose array may have been submitted: its own task cancelled,
    found by its array's name (one lookup; a lookup that fails raises)."""
    offset, task = array_task(job.sweep_index, rt.hpcs[job.hpc].max_array_size)
    name = chunk_name(job.sweep_id, offset)
    array_id = rt.run(handler.find_many_by_name([name])).get(name)
    if array_id is None:
        return []
    element = f"{array_id}_{task}"
    rt.run(handler.cancel(element))
    rt.store.add_event(job.id, "cancel_sent", f"asked {job.hpc} to cancel {element}, "
                       "submitted with this job's sweep", touch=False)
    return [element]


def honour_requests(rt, jobs, resend: Throttle) -> None:
    """The poller's cycle: honour the cancel requests of queued jobs, and (re)send those of
    jobs in the scheduler's queue when `resend` says they are due — all of a cycle in one
    command (a cancelled sweep: its elements together). Staging and finishing jobs are
    their worker's: it looks for the request itself."""
    due = []
    for job in jobs:
        if not job.cancel_requested or job.status not in (S.QUEUED, *WATCHED):
            continue
        if job.status in WATCHED and job.scheduler_id:
            if resend.due(job.id):
                due.append(job)
            continue
        try:
            send(rt, job)
        except HPCUnavailable:
            raise
        except ConnectorError as exc:  # one refused cancel must not stop the polling
            log.warning("cancel of %s: %s", job.id, exc)  # of the rest
    for start in range(0, len(due), CANCELS_PER_COMMAND):
        chunk = due[start:start + CANCELS_PER_COMMAND]
        try:
            send_many(rt, chunk)
        except HPCUnavailable:
            for job in chunk:
                resend.forget(job.id)
            raise
        except ConnectorError as exc:
            log.warning("cancel of %d jobs: %s", len(chunk), exc)
