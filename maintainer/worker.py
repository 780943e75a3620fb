"""A maintainer worker process: a non-forking rq worker plus the poller and heartbeats,
sharing one Runtime (event loop and SSH pools) for the life of the process."""
from __future__ import annotations

import logging
import threading

from rq import SimpleWorker
from traitlets.config import Config

from hpcbridge.config import Site

from . import runtime as R
from .liveness import heartbeat_loop
from .poller import Poller

log = logging.getLogger("hpcbridge.maintainer")


def run_worker(config: Config | None = None, burst: bool = False) -> None:
    """Run one worker until SIGTERM/SIGINT (rq's warm shutdown) or, with burst, idle."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("alembic", "asyncssh", "rq"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    rt = R.Runtime(Site(config=config or Config()))
    R.install(rt)
    stop = threading.Event()
    poller = Poller(rt, stop)
    threads = [
        threading.Thread(target=poller.run, name="hpcbridge-poller", daemon=True),
        threading.Thread(target=heartbeat_loop, args=(rt, lambda: poller.leases, stop),
                         name="hpcbridge-heartbeat", daemon=True),
    ]
    for t in threads:
        t.start()
    worker = SimpleWorker([rt.queue(h) for h in rt.hpcs], connection=rt.redis,
                          name=rt.worker_id)
    log.info("worker %s serves %s", rt.worker_id, ", ".join(rt.hpcs))
    try:
        worker.work(burst=burst, logging_level="WARNING", with_scheduler=False)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        try:
            rt.store.remove_worker(rt.worker_id)
        except Exception:  # the database may be gone at shutdown: the heartbeat expires
            pass
        rt.close()
        R.install(None)
