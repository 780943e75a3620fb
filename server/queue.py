"""The middleware's side of the Redis queue: hand a job to the maintainer pool."""
from __future__ import annotations

import logging

from hpcbridge.config import Site, connect_redis
from hpcbridge.taskqueue import enqueue_advance, request_wake

log = logging.getLogger("hpcbridge.server")

# A hung Redis (accepting, never answering) must not hang a POST: every command of the
# middleware's connection has this deadline. The store is the truth; a job that was not
# enqueued is found by the maintainer's reconciliation.
REDIS_TIMEOUT_SECONDS = 2.0


def connect(site: Site, timeout: float = REDIS_TIMEOUT_SECONDS):
    """The site's Redis with a deadline on connect and on every command."""
    if site.redis_url:
        import redis
        return redis.Redis.from_url(site.redis_url, socket_timeout=timeout,
                                    socket_connect_timeout=timeout)
    return connect_redis(site)  # the embedded one: a local socket of our own server


class JobQueue:
    def __init__(self, site: Site, timeout: float = REDIS_TIMEOUT_SECONDS):
        self.site = site
        self.timeout = timeout
        self._redis = None

    @property
    def redis(self):
        if self._redis is None:
            self._redis = connect(self.site, self.timeout)
        return self._redis

    def advance(self, job_id: str, hpc: str) -> bool:
        """Ask a worker to move the job on. A failure is logged, not raised: the job is
        in the store, and the maintainer's reconciliation finds it anyway."""
        try:
            enqueue_advance(self.redis, self.site.queue_prefix, job_id, hpc)
            return True
        except Exception as exc:  # redis down or hung: the job waits for reconciliation
            log.warning("could not enqueue job %s: %s", job_id, exc)
            return False

    def wake(self, hpc: str) -> bool:
        """A new job waits on `hpc`: ask a worker to take the HPC's queued jobs to the
        scheduler (one SET NX while a wake is pending, instead of an rq task per job).
        Never raises, like `advance`: the poller offers queued jobs anyway."""
        try:
            request_wake(self.redis, self.site.queue_prefix, hpc)
            return True
        except Exception as exc:  # redis down or hung: the poller's resend finds the job
            log.warning("could not enqueue a wake of %s: %s", hpc, exc)
            return False

    def close(self) -> None:
        if self._redis is not None:
            try:
                self._redis.close()
            except Exception as exc:  # closing a dead connection: nothing left to do
                log.debug("closing redis: %s", exc)
            self._redis = None
