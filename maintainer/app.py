"""`hpcbridge maintainer --workers N`: the pool of long-lived workers."""
from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time

from traitlets import Bool, Int
from traitlets.config import Configurable

from hpcbridge import __version__
from hpcbridge.artifacts import SharedFolderArtifacts
from hpcbridge.config import ConfigFileApp, Site, connect_redis, release_redis
from hpcbridge.notifyrules import Notifier

from .config import Maintainer
from .metrics import MaintainerMetrics, PoolMetrics
from .worker import EXIT_WRONG_STORE, check_artifacts, run_worker

log = logging.getLogger("hpcbridge.maintainer")


def configurable_classes() -> list[type[Configurable]]:
    """Every class a maintainer reads from hpcbridge_config.py: Site, its artifact store,
    Maintainer, its metrics and notifications, and any
    built-in scheduler handler that is itself configurable (none is today: an HPC's
    Slurm commands and batch prelude are part of its Site.hpcs entry)."""
    from hpcbridge.connectors.handlers import BUILTIN_HANDLERS
    handlers = [cls for cls in BUILTIN_HANDLERS.values() if issubclass(cls, Configurable)]
    return [Site, SharedFolderArtifacts, Maintainer, MaintainerMetrics, Notifier, *handlers]


class MaintainerApp(ConfigFileApp):
    name = "hpcbridge-maintainer"
    version = __version__
    description = "Drives every job's life on the HPCs: stage, submit, watch, cancel, collect."
    classes = configurable_classes()
    aliases = {"workers": "MaintainerApp.workers", "config": "MaintainerApp.config_file",
               "data-dir": "Site.data_dir", "artifacts": "SharedFolderArtifacts.root",
               "db-url": "Site.db_url",
               "redis-url": "Site.redis_url", "log-level": "Application.log_level",
               "metrics-port": "MaintainerMetrics.port"}
    flags = {"burst": ({"MaintainerApp": {"burst": True}}, "exit when the queues are empty"),
             "generate-config": ({"MaintainerApp": {"generate_config": True}},
                                 "write the config file (--config) with every setting, "
                                 "commented, and exit")}

    workers = Int(2, help="Worker processes (each non-forking, with its own SSH pools)."
                  ).tag(config=True)
    burst = Bool(False, help="Exit once the queues are empty (tests, cron).").tag(config=True)

    def start(self):
        if self.generate_config:
            self.write_config_file()
            return
        if self.workers <= 1:
            run_worker(self.config, self.burst)
            return
        self.check_artifacts()
        self.run_pool()

    def check_artifacts(self) -> None:
        """The pool starts no worker when this host does not see the site's artifact store
        (each worker checks again at its own start)."""
        site = Site(config=self.config)
        redis = connect_redis(site)
        try:
            check_artifacts(site, redis)
        finally:
            release_redis(redis)

    def run_pool(self) -> None:
        supervisor = Supervisor(self.config, self.burst, self.workers)
        supervisor.run()
        if supervisor.exit_code:
            self.exit(supervisor.exit_code)


# A worker that died is started again after a pause that doubles while it keeps dying soon
# after its start (a crash loop must not spin), from the first to the longest.
RESTART_BACKOFF = (1.0, 60.0)
STEADY_SECONDS = 60.0  # a worker that ran this long died "once": its pause starts over
STOP_GRACE_SECONDS = 60.0  # a stopping worker finishes its task in hand for at most this long


class Supervisor:
    """`workers` worker processes, each started again when it dies (logged with its exit
    code); SIGTERM, SIGINT and SIGHUP stop them all (rq's warm shutdown), then the pool."""

    def __init__(self, config, burst: bool, workers: int):
        self.config, self.burst, self.count = config, burst, workers
        self.ctx = multiprocessing.get_context("spawn")
        self.procs: list = [None] * workers
        self.started = [0.0] * workers
        self.pause = [RESTART_BACKOFF[0]] * workers
        self.due = [0.0] * workers  # when a dead worker is started again
        self.done = [False] * workers  # burst: a worker that emptied its queues
        self.stopping = threading.Event()
        self.exit_code = 0
        self.metrics = PoolMetrics(config)  # one /metrics for every worker

    def start(self, i: int) -> None:
        p = self.ctx.Process(target=run_worker, args=(self.config, self.burst, os.getpid()),
                             name=f"hpcbridge-worker-{i}")
        p.start()
        self.procs[i], self.started[i] = p, time.monotonic()
        log.info("worker %d started (pid %d)", i, p.pid)

    def _on_signal(self, signum, _frame):
        self.stopping.set()
        for p in self.procs:
            if p is not None and p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    def run(self) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self.metrics.start()  # before the workers: they inherit its folder
        try:
            for i in range(self.count):
                self.start(i)
            while not self.stopping.is_set() and not all(self.done):
                sentinels = [p.sentinel for p in self.procs if p is not None and p.is_alive()]
                multiprocessing.connection.wait(sentinels, timeout=0.5)
                self.check()
            self.stop()
        finally:
            self.metrics.close()

    def check(self) -> None:
        """Notice dead workers and start them again when their pause is over."""
        now = time.monotonic()
        for i, p in enumerate(self.procs):
            if self.stopping.is_set() or self.done[i]:
                continue
            if p is not None and p.exitcode is not None:
                p.join()
                self.procs[i] = None
                self.metrics.worker_died(p.pid)
                if p.exitcode == EXIT_WRONG_STORE:  # said why in its log: no restart helps
                    log.critical("worker %d (pid %d) does not see the site's artifact store:"
                                 " stopping the pool", i, p.pid)
                    self.exit_code = 1
                    self._on_signal(signal.SIGTERM, None)
                    continue
                if self.burst and p.exitcode == 0:
                    self.done[i] = True
                    continue
                steady = now - self.started[i] > STEADY_SECONDS
                self.pause[i] = RESTART_BACKOFF[0] if steady else \
                    min(self.pause[i] * 2, RESTART_BACKOFF[1])
                self.due[i] = now + self.pause[i]
                log.warning("worker %d (pid %d) exited with code %s: starting it again in "
                            "%.0f s", i, p.pid, p.exitcode, self.pause[i])
            elif p is None and now >= self.due[i]:
                self.start(i)

    def stop(self) -> None:
        """Warm shutdown of every worker; those still running after the grace are killed."""
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for p in self.procs:
            if p is None:
                continue
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                log.warning("worker pid %d did not stop in time: killed", p.pid)
                p.kill()
                p.join(5)
