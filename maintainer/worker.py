"""A maintainer worker process: a non-forking rq worker plus the poller and heartbeats,
sharing one Runtime (event loop and SSH pools) for the life of the process."""
from __future__ import annotations

import logging
import os
import socket
import threading

from rq import SimpleWorker
from traitlets.config import Config

from hpcbridge.config import Site

from . import runtime as R
from .poller import Poller

log = logging.getLogger("hpcbridge.maintainer")


def heartbeat_loop(rt: R.Runtime, poller: Poller, stop: threading.Event, every: float):
    host, pid = socket.gethostname(), os.getpid()
    while not stop.is_set():
        try:
            rt.store.heartbeat(rt.worker_id, host, pid, sorted(poller.leases))
        except Exception:
            log.exception("heartbeat failed")
        stop.wait(every)


def run_worker(config: Config | None = None, burst: bool = False) -> None:
    """Run one worker until SIGTERM/SIGINT (rq's warm shutdown) or, with burst, idle."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("alembic", "asyncssh", "rq"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    site = Site(config=config or Config())
    rt = R.Runtime(site)
    R.install(rt)
    stop = threading.Event()
    poller = Poller(rt, stop)
    threads = [
        threading.Thread(target=poller.run, name="hpcbridge-poller", daemon=True),
        threading.Thread(target=heartbeat_loop, args=(rt, poller, stop, site.worker_timeout / 6),
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
        except Exception:
            pass
        rt.close()
        R.install(None)
