"""The rq task contract, defined once for the producer (middleware, poller) and the consumer
(maintainer workers): which queue, which task, how long it may run and be remembered."""
from __future__ import annotations

ADVANCE_TASK = "hpcbridge.maintainer.tasks.advance"
# the batched submit path of one HPC (maintainer/batch.py): admits, stages and submits
# whatever is queued there; asked for by `request_wake`
WAKE_TASK = "hpcbridge.maintainer.batch.wake"
# an advance task may run this long (stage-in of a large upload, stage-out); job claims
# (maintainer/claims.py) are held as long
TASK_TIMEOUT_SECONDS = 3600
RESULT_TTL_SECONDS = 60
FAILURE_TTL_SECONDS = 86400
# A wake is pending while its key lives: set when enqueued, deleted by the task when it
# starts. Past this a lost wake (its worker killed before it started) no longer holds
# back new ones; the poller's resend (Maintainer.resend_seconds) is the safety net anyway.
WAKE_TTL_SECONDS = 10


def queue_name(prefix: str, hpc: str) -> str:
    """The rq queue of an HPC: one per HPC so that a slow HPC never blocks another's."""
    return f"{prefix}.{hpc}"


def wake_key(prefix: str, hpc: str) -> str:
    return f"{prefix}:wake:{hpc}"


def _enqueue(redis, prefix: str, hpc: str, task: str, *args, description: str) -> None:
    from rq import Queue
    Queue(queue_name(prefix, hpc), connection=redis).enqueue(
        task, *args, job_timeout=TASK_TIMEOUT_SECONDS, result_ttl=RESULT_TTL_SECONDS,
        failure_ttl=FAILURE_TTL_SECONDS, description=description)


def enqueue_advance(redis, prefix: str, job_id: str, hpc: str) -> None:
    """Ask a worker to move the job on (raises on a Redis error: the caller decides)."""
    _enqueue(redis, prefix, hpc, ADVANCE_TASK, job_id, description=f"advance {job_id}")


def request_wake(redis, prefix: str, hpc: str) -> bool:
    """Ask a worker to take the HPC's queued jobs to the scheduler, unless a wake is
    already pending (it has not started yet, so it will see every job committed before
    this call): one SET NX in the common case instead of an rq task per job. True if a
    task was enqueued. Raises on a Redis error (the caller decides)."""
    key = wake_key(prefix, hpc)
    if not redis.set(key, b"1", nx=True, ex=WAKE_TTL_SECONDS):
        return False
    try:
        _enqueue(redis, prefix, hpc, WAKE_TASK, hpc, description=f"wake {hpc}")
    except BaseException:
        try:  # no task behind the key: let the next caller try
            redis.delete(key)
        except Exception:  # Redis away: the key expires
            pass
        raise
    return True


def clear_wake(redis, prefix: str, hpc: str) -> None:
    """A wake starts: from now on a new job asks for a new one (raises on a Redis error)."""
    redis.delete(wake_key(prefix, hpc))
