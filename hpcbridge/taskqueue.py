"""The rq task contract, defined once for the producer (middleware, poller) and the consumer
(maintainer workers): which queue, which task, how long it may run and be remembered."""
from __future__ import annotations

ADVANCE_TASK = "hpcbridge.maintainer.tasks.advance"
# an advance task may run this long (stage-in of a large upload, stage-out); job claims
# (maintainer/claims.py) are held as long
TASK_TIMEOUT_SECONDS = 3600
RESULT_TTL_SECONDS = 60
FAILURE_TTL_SECONDS = 86400


def queue_name(prefix: str, hpc: str) -> str:
    """The rq queue of an HPC: one per HPC so that a slow HPC never blocks another's."""
    return f"{prefix}.{hpc}"


def enqueue_advance(redis, prefix: str, job_id: str, hpc: str) -> None:
    """Ask a worker to move the job on (raises on a Redis error: the caller decides)."""
    from rq import Queue
    Queue(queue_name(prefix, hpc), connection=redis).enqueue(
        ADVANCE_TASK, job_id, job_timeout=TASK_TIMEOUT_SECONDS, result_ttl=RESULT_TTL_SECONDS,
        failure_ttl=FAILURE_TTL_SECONDS, description=f"advance {job_id}")
