"""`hpcbridge maintainer --workers N`: the pool of long-lived workers."""
from __future__ import annotations

import multiprocessing
import os
import signal

from traitlets import Bool, Int, Unicode
from traitlets.config import Application

from hpcbridge import __version__
from hpcbridge.config import Site

from .worker import run_worker


class MaintainerApp(Application):
    name = "hpcbridge-maintainer"
    version = __version__
    description = "Drives every job's life on the HPCs: stage, submit, watch, cancel, collect."
    classes = [Site]
    aliases = {"workers": "MaintainerApp.workers", "config": "MaintainerApp.config_file",
               "data-dir": "Site.data_dir", "db-url": "Site.db_url",
               "redis-url": "Site.redis_url", "log-level": "Application.log_level"}
    flags = {"burst": ({"MaintainerApp": {"burst": True}}, "exit when the queues are empty")}

    config_file = Unicode("hpcbridge_config.py", help="Config file to load.").tag(config=True)
    workers = Int(2, help="Worker processes (each non-forking, with its own SSH pools)."
                  ).tag(config=True)
    burst = Bool(False, help="Exit once the queues are empty (tests, cron).").tag(config=True)

    def initialize(self, argv=None):
        super().initialize(argv)
        if os.path.exists(self.config_file):
            self.load_config_file(self.config_file)
            self.update_config(self.cli_config)

    def start(self):
        if self.workers <= 1:
            run_worker(self.config, self.burst)
            return
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
