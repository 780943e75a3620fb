"""`hpcbridge maintainer --workers N`: the pool of long-lived workers."""
from __future__ import annotations

import multiprocessing
import os
import signal

from traitlets import Bool, Int
from traitlets.config import Configurable

from hpcbridge import __version__
from hpcbridge.config import ConfigFileApp, Site

from .config import Maintainer
from .worker import run_worker


def configurable_classes() -> list[type[Configurable]]:
    """Every class a maintainer reads from hpcbridge_config.py: Site, Maintainer, and any
    built-in scheduler handler that is itself configurable (none is today: an HPC's
    Slurm commands and batch prelude are part of its Site.hpcs entry)."""
    from hpcbridge.connectors.handlers import BUILTIN_HANDLERS
    handlers = [cls for cls in BUILTIN_HANDLERS.values() if issubclass(cls, Configurable)]
    return [Site, Maintainer, *handlers]


class MaintainerApp(ConfigFileApp):
    name = "hpcbridge-maintainer"
    version = __version__
    description = "Drives every job's life on the HPCs: stage, submit, watch, cancel, collect."
    classes = configurable_classes()
    aliases = {"workers": "MaintainerApp.workers", "config": "MaintainerApp.config_file",
               "data-dir": "Site.data_dir", "db-url": "Site.db_url",
               "redis-url": "Site.redis_url", "log-level": "Application.log_level"}
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
        self.run_pool()

    def run_pool(self) -> None:
        """`workers` worker processes; SIGTERM/SIGINT are passed on to each."""
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=run_worker, args=(self.config, self.burst),
                             name=f"hpcbridge-worker-{i}") for i in range(self.workers)]
        for p in procs:
            p.start()

        def forward(signum, _frame):
            for p in procs:
                if p.is_alive():
                    os.kill(p.pid, signum)
        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        for p in procs:
            p.join()
