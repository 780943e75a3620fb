"""Worker liveness: each worker writes a heartbeat to the store; a worker whose heartbeat
is older than Site.worker_timeout is dead, and its claims and jobs are taken over."""
from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable

from hpcbridge.clock import utcnow

log = logging.getLogger("hpcbridge.maintainer")


def alive_workers(rt) -> set[str]:
    """Ids of the workers that are alive (Worker.alive), and this one."""
    now = utcnow()
    alive = {w.id for w in rt.store.workers()
             if w.alive(rt.site.worker_timeout, now)}
    alive.add(rt.worker_id)
    return alive


def heartbeat_loop(rt, leases: Callable[[], Iterable[str]], stop: threading.Event) -> None:
    """Beat until `stop`, recording the poller leases this worker holds (for operators)."""
    every = rt.site.worker_timeout / rt.tuning.heartbeats_per_timeout
    host, pid = socket.gethostname(), os.getpid()
    while not stop.is_set():
        try:
            rt.store.heartbeat(rt.worker_id, host, pid, sorted(leases()))
        except Exception:  # a database hiccup must not end the heartbeats
            log.exception("heartbeat failed")
        stop.wait(every)
