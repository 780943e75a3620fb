"""The one way a cancel request is honoured, used by the poller (each cycle, for the jobs
it watches) and by the rq task (when a cancelled job is handed to a worker)."""
from __future__ import annotations

from hpcbridge.connectors.spec import job_name
from hpcbridge.lifecycle import JobStatus

from .decisions import WATCHED

S = JobStatus
BEFORE_SUBMIT = (S.QUEUED, S.STAGING)


def send(rt, job) -> str:
    """One attempt to honour `job`'s cancel request; what was done.

    Before submission the job is made sure never to reach the scheduler (a worker that
    died after sbatch is looked up by name and taken back) and ends `cancelled`; in the
    scheduler's queue it is asked to stop, and the poller sees it end. A job that is
    `finishing` is left to finish (its outcome is known). Connector errors are raised:
    the caller decides how to wait for the HPC."""
    handler = rt.handlers[job.hpc]
    if job.status in BEFORE_SUBMIT:
        if job.status == S.STAGING:
            found = rt.run(handler.find_by_name(job_name(job.id)))
            if found:
                rt.run(handler.cancel(found))
        rt.store.transition(job.id, S.CANCELLED, "cancelled before it reached the scheduler",
                            expect=BEFORE_SUBMIT)
        return "cancelled"
    if job.status in WATCHED and job.scheduler_id:
        rt.run(handler.cancel(job.scheduler_id))
        rt.store.add_event(job.id, "cancel_sent",
                           f"asked {job.hpc} to cancel {job.scheduler_id}", touch=False)
        return "cancel sent"
    return "nothing to cancel"
