"""What a worker process keeps alive between rq jobs: one asyncio loop (in its own thread),
the connector pools of every HPC, the store and the Redis connection."""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import threading
import uuid
from collections.abc import Coroutine
from typing import Any

import redis
from rq import Queue

from hpcbridge.config import Site, connect_redis, release_redis
from hpcbridge.connectors.errors import RemoteTimeout
from hpcbridge.connectors.handlers import SchedulerHandler, create_handler
from hpcbridge.server.eventbus import EventBus, install_publisher, remove_publisher
from hpcbridge.server.store import Store
from hpcbridge.taskqueue import enqueue_advance, queue_name

from .config import Maintainer

# What a lost or stalled Redis raises: a condition to wait out, never a job's failure.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)

# Runtime.run's deadline when the caller gives none. Every remote call in connectors/ has its
# own deadline (connect × retries, command, SFTP); this one only catches a coroutine that
# hangs anyway, so it is the worst case of one call of each kind plus a margin. A caller
# that runs many calls in one coroutine (a large stage-in) passes its own timeout.
RUN_TIMEOUT_MARGIN_SECONDS = 30.0
REACH_MARGIN_SECONDS = 2.0  # Runtime.work_root: one connect attempt and its login


def default_run_timeout(hpcs) -> float:
    worst = max((h.connect_timeout * h.connect_retries + h.command_timeout + h.sftp_timeout
                 for h in hpcs.values()), default=0.0)
    return worst + RUN_TIMEOUT_MARGIN_SECONDS


class Runtime:
    def __init__(self, site: Site, worker_id: str | None = None):
        self.site = site
        self.tuning = Maintainer(config=site.config)
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.store = Store(site.db_url, max_log_bytes=site.max_log_bytes)
        self.redis = connect_redis(site)
        # the events and log text this worker stores are pushed to the middleware's streams
        self.publisher = install_publisher(self.redis, site.queue_prefix,
                                           EventBus(config=site.config).publish_timeout)
        self.hpcs = site.hpc_configs()
        self.handler_classes = site.handler_registry()  # the built-ins and the site's own
        self.run_timeout = default_run_timeout(self.hpcs)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="hpcbridge-io", daemon=True)
        self._thread.start()
        self.handlers: dict[str, SchedulerHandler] = {
            hpc_id: self.run(self._create(cfg)) for hpc_id, cfg in self.hpcs.items()}

    async def _create(self, cfg):  # pools are made inside the loop that will use them
        return create_handler(cfg, registry=self.handler_classes)

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine, timeout: float | None = None) -> Any:
        """Run a coroutine on the io loop from any thread and wait for its result, at most
        `timeout` seconds (default: run_timeout). Past it the coroutine is cancelled and
        RemoteTimeout (an HPCUnavailable: wait and retry) is raised."""
        limit = self.run_timeout if timeout is None else timeout
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(limit)
        except concurrent.futures.TimeoutError:
            if future.done():  # the coroutine's own timeout, or it ended just now
                return future.result()
            future.cancel()
            raise RemoteTimeout(f"no answer within {limit:.0f} s (abandoned)") from None

    def work_root(self, hpc: str) -> str:
        """The HPC's work root, a worker task's first contact with it, waited for at most
        one connect attempt: a task never waits out the reconnects of an HPC that does not
        answer (RemoteTimeout: its jobs go back to the queue, the HPC is marked unreachable
        and the poller, which probes it, offers them again when it is back). Meanwhile the
        worker serves the other HPCs."""
        cfg = self.hpcs[hpc]
        return self.run(self.handlers[hpc].transport.resolve_work_root(),
                        timeout=cfg.connect_timeout + REACH_MARGIN_SECONDS)

    def queue(self, hpc: str) -> Queue:
        return Queue(queue_name(self.site.queue_prefix, hpc), connection=self.redis)

    def enqueue_advance(self, job_id: str, hpc: str) -> None:
        enqueue_advance(self.redis, self.site.queue_prefix, job_id, hpc)

    def key(self, *parts: str) -> str:
        return ":".join((self.site.queue_prefix, *parts))

    def close(self) -> None:
        for handler in self.handlers.values():
            try:
                self.run(handler.close(), timeout=10)
            except Exception:
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        remove_publisher(self.publisher)
        release_redis(self.redis)  # the last user of an embedded Redis stops it


_current: Runtime | None = None


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("no maintainer runtime in this process (start a worker)")
    return _current


def install(runtime: Runtime | None) -> None:
    global _current
    _current = runtime

