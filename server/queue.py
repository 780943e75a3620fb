"""The middleware's side of the Redis queue: hand a job to the maintainer pool."""
from __future__ import annotations

import logging

from hpcbridge.config import Site, connect_redis
from hpcbridge.taskqueue import enqueue_advance

log = logging.getLogger("hpcbridge.server")


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
            enqueue_advance(self.redis, self.site.queue_prefix, job_id, hpc)
            return True
        except Exception as exc:  # redis down: the job waits for reconciliation
            log.warning("could not enqueue job %s: %s", job_id, exc)
            return False
