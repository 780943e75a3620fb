"""The middleware's side of the Redis queue: hand a job to the maintainer pool."""
from __future__ import annotations

import logging

from rq import Queue

from hpcbridge.config import Site, connect_redis, queue_name

log = logging.getLogger("hpcbridge.server")

ADVANCE_TASK = "hpcbridge.maintainer.tasks.advance"


class JobQueue:
    def __init__(self, site: Site):
        self.site = site
        self._redis = None

    @property
    def redis(self):
        if self._redis is None:
            self._redis = connect_redis(self.site)
        return self._redis

    def advance(self, job_id: str, hpc: str) -> bool:
        """Ask a worker to move the job on. A failure is logged, not raised: the job is
        in the store, and the maintainer's reconciliation finds it anyway."""
        try:
            Queue(queue_name(self.site, hpc), connection=self.redis).enqueue(
                ADVANCE_TASK, job_id, job_timeout=3600, result_ttl=60, failure_ttl=86400,
                description=f"advance {job_id}")
            return True
        except Exception as exc:  # redis down: the job waits for reconciliation
            log.warning("could not enqueue job %s: %s", job_id, exc)
            return False
