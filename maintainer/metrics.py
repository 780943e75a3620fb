"""Prometheus metrics of the maintainer workers (issue #25).

A pool of workers (`hpcbridge maintainer --workers N`, maintainer/app.py) serves one
`/metrics` on MaintainerMetrics.port: each worker writes its values into files of a private
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode, set by the pool before it
starts them), and the pool adds them up at each scrape, so counters of every worker — and
of workers that died — count. A single worker (--workers 1) serves its own values.

Measured here: poll cycles (stats.measured calls observe_cycle), every remote command, the
SSH pools (sampled every SAMPLE_SECONDS: connections, channels in use, refusals), remote
errors by class (decisions.ERROR_HOOKS), transitions and time in each state
(Store.transition_hooks). docs/metrics.md lists them all.
"""
from __future__ import annotations

import hmac
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from traitlets import Int, Unicode, default
from traitlets.config import Configurable

from hpcbridge.server.auth import token_from_header
from hpcbridge.server.metrics import STATE_BUCKETS, TransitionObserver

log = logging.getLogger("hpcbridge.maintainer")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SAMPLE_SECONDS = 1.0  # how often a worker reads its SSH pools' gauges
CYCLE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 180)
COMMAND_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100)


class MaintainerMetrics(Configurable):
    """Where the maintainer serves its /metrics, and who may read it."""

    port = Int(0, help="""Port of the maintainer's /metrics (one per pool, every worker's
        values added up); 0: none.""").tag(config=True)
    ip = Unicode("127.0.0.1", help="Address of the maintainer's /metrics.").tag(config=True)
    token = Unicode(help="""When set, /metrics needs `Authorization: Bearer <token>` (as
        the middleware's Metrics.token). Default: $HPCBRIDGE_METRICS_TOKEN.""").tag(config=True)
    multiproc_dir = Unicode(help="""Folder of the workers' metric files (emptied when the
        pool starts). Default: a new private temporary folder, removed at exit."""
                            ).tag(config=True)

    @default("token")
    def _token(self):
        return os.environ.get("HPCBRIDGE_METRICS_TOKEN", "")


REGISTRY = CollectorRegistry()
POLL_SECONDS = Histogram("hpcbridge_poll_cycle_seconds", "Duration of poll cycles",
                         ["hpc"], buckets=CYCLE_BUCKETS, registry=REGISTRY)
POLL_CYCLES = Counter("hpcbridge_poll_cycles", "Poll cycles by result: ok, unreachable, "
                      "lease_lost, error", ["hpc", "result"], registry=REGISTRY)
POLL_COMMANDS = Counter("hpcbridge_poll_commands", "Remote commands sent by poll cycles",
                        ["hpc", "program"], registry=REGISTRY)
CYCLE_COMMANDS = Histogram("hpcbridge_poll_cycle_commands", "Remote commands per poll cycle",
                           ["hpc"], buckets=COMMAND_BUCKETS, registry=REGISTRY)
SSH_COMMANDS = Counter("hpcbridge_ssh_commands", "Every remote command and SFTP session "
                       "of the workers", ["hpc", "program"], registry=REGISTRY)
SSH_CONNECTIONS = Gauge("hpcbridge_ssh_connections", "Open SSH connections",
                        ["hpc"], multiprocess_mode="livesum", registry=REGISTRY)
SSH_CHANNELS_IN_USE = Gauge("hpcbridge_ssh_channels_in_use", "SSH channels in use",
                            ["hpc"], multiprocess_mode="livesum", registry=REGISTRY)
SSH_CHANNELS = Gauge("hpcbridge_ssh_channels", "SSH channels the pools may open at once",
                     ["hpc"], multiprocess_mode="livesum", registry=REGISTRY)
SSH_REFUSALS = Counter("hpcbridge_ssh_channel_refusals", "SSH channels sshd refused "
                       "(retried)", ["hpc"], registry=REGISTRY)
SSH_OPENED = Counter("hpcbridge_ssh_connections_opened", "SSH connections opened",
                     ["hpc"], registry=REGISTRY)
REMOTE_ERRORS = Counter("hpcbridge_remote_errors", "Errors of job steps by class and what "
                        "they mean (wait, wait_unhealthy, fail, retry_local)",
                        ["error", "reading"], registry=REGISTRY)
TRANSITIONS = Counter("hpcbridge_job_transitions", "Job status changes made by this process",
                      ["hpc", "status"], registry=REGISTRY)
STATE_SECONDS = Histogram("hpcbridge_job_state_seconds", "Time jobs spent in a status, "
                          "observed when they leave it", ["hpc", "state"],
                          buckets=STATE_BUCKETS, registry=REGISTRY)
WORKERS_UP = Gauge("hpcbridge_maintainer_workers_up", "Worker processes running",
                   multiprocess_mode="livesum", registry=REGISTRY)


def instrument_worker(rt, poller) -> WSGIServer | None:
    """Called once in each worker process before its threads start; the /metrics server
    of a lone worker (not in a pool), if it serves one."""
    TransitionObserver.install(rt.store, TRANSITIONS, STATE_SECONDS)
    for hpc_id, handler in rt.handlers.items():
        hooks = handler.transport.commands.hooks
        hooks.append(lambda argv, hpc=hpc_id: SSH_COMMANDS.labels(hpc, program(argv)).inc())
    from . import decisions
    hooks = getattr(decisions, "ERROR_HOOKS", None)
    if hooks is not None and count_remote_error not in hooks:
        hooks.append(count_remote_error)
    WORKERS_UP.set(1)
    threading.Thread(target=PoolSampler(rt.handlers).run, name="hpcbridge-metrics",
                     daemon=True).start()
    settings = MaintainerMetrics(config=rt.site.config)
    if settings.port and not os.environ.get(MULTIPROC_ENV):  # a lone worker: its own
        return serve(REGISTRY, settings)
    return None


def program(argv) -> str:
    return os.path.basename(str(argv[0]))[:32] if argv else "?"


def count_remote_error(exc: BaseException, reading: str) -> None:
    """A decisions.ERROR_HOOKS entry: one error of a job's step, by class and reading."""
    REMOTE_ERRORS.labels(type(exc).__name__, str(reading)).inc()


def observe_cycle(hpc_id: str, stats: dict, failed: bool) -> None:
    """One finished poll cycle (stats.measured): its duration, result and commands."""
    result = "error" if failed else "lease_lost" if stats.get("lease_lost") else \
        "unreachable" if stats.get("unreachable") else "ok"
    POLL_CYCLES.labels(hpc_id, result).inc()
    POLL_SECONDS.labels(hpc_id).observe(stats["seconds"])
    commands = stats.get("commands") or {}
    for name, n in commands.items():
        POLL_COMMANDS.labels(hpc_id, name).inc(n)
    CYCLE_COMMANDS.labels(hpc_id).observe(sum(commands.values()))


def pool_usage(pool) -> dict | None:
    """What an SSH pool (connectors/pool.py) holds now; None for a transport without one.
    Read from another thread: plain attribute reads, no await."""
    conns = getattr(pool, "_conns", None)
    slots = getattr(pool, "_slots", None)
    if conns is None or slots is None:
        return None
    channels = pool.config.connections * pool.config.channels_per_connection
    return {"connections": sum(1 for c in list(conns) if c is not None and not c.is_closed()),
            "channels": channels, "in_use": max(0, channels - slots.qsize()),
            "refusals": pool.channel_refusals, "opened": pool.connections_opened}


class PoolSampler:
    """Copies each SSH pool's state into the gauges, and its running totals into counters
    (by their increase), every SAMPLE_SECONDS."""

    def __init__(self, handlers: dict):
        self.handlers = handlers
        self.seen: dict[tuple[str, str], int] = {}

    def run(self) -> None:
        while True:
            try:
                self.sample()
            except Exception:  # a metric never ends a worker
                log.debug("could not sample the SSH pools", exc_info=True)
            time.sleep(SAMPLE_SECONDS)

    def sample(self) -> None:
        for hpc_id, handler in self.handlers.items():
            usage = pool_usage(handler.transport)
            if usage is None:
                continue
            SSH_CONNECTIONS.labels(hpc_id).set(usage["connections"])
            SSH_CHANNELS_IN_USE.labels(hpc_id).set(usage["in_use"])
            SSH_CHANNELS.labels(hpc_id).set(usage["channels"])
            for name, counter in (("refusals", SSH_REFUSALS), ("opened", SSH_OPENED)):
                grown = usage[name] - self.seen.get((hpc_id, name), 0)
                child = counter.labels(hpc_id)  # shown from 0, before the first one
                if grown > 0:
                    child.inc(grown)
                self.seen[(hpc_id, name)] = usage[name]


# --- serving ----------------------------------------------------------------------------------
class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):  # a scrape every second is not news
        pass


def guarded(app, token: str):
    """/metrics only, and with `token` set only for `Authorization: Bearer <token>`."""
    def wsgi(environ, start_response):
        if environ.get("PATH_INFO", "/").rstrip("/") != "/metrics":
            return _error(start_response, "404 Not Found", "not_found", "only /metrics here")
        given = token_from_header(environ.get("HTTP_AUTHORIZATION")) or ""
        if token and not hmac.compare_digest(given, token):
            return _error(start_response, "401 Unauthorized", "unauthorized",
                          "/metrics needs MaintainerMetrics.token as a bearer token")
        return app(environ, start_response)
    return wsgi


def _error(start_response, status: str, code: str, message: str):
    start_response(status, [("Content-Type", "application/json")])
    return [json.dumps({"error": code, "message": message}).encode()]


def serve(registry, settings: MaintainerMetrics) -> WSGIServer:
    """/metrics of `registry` on settings.ip:port, in a daemon thread."""
    server = make_server(settings.ip, settings.port, guarded(make_wsgi_app(registry),
                                                             settings.token),
                         server_class=_Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="hpcbridge-metrics-http",
                     daemon=True).start()
    log.info("metrics on http://%s:%d/metrics", settings.ip, server.server_port)
    return server


class PoolMetrics:
    """The pool's side: a clean multiprocess folder, exported to the workers it starts,
    and one /metrics adding up their files. Nothing when MaintainerMetrics.port is 0."""

    def __init__(self, config):
        self.settings = MaintainerMetrics(config=config)
        self.path: str | None = None
        self.server: WSGIServer | None = None
        self._own_dir = False

    def start(self) -> PoolMetrics:
        if not self.settings.port:
            return self
        from prometheus_client import multiprocess
        self.path = self.settings.multiproc_dir or tempfile.mkdtemp(prefix="hpcbridge-metrics-")
        self._own_dir = not self.settings.multiproc_dir
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        for name in os.listdir(self.path):  # values of an earlier pool must not count
            if name.endswith(".db"):
                os.remove(os.path.join(self.path, name))
        os.environ[MULTIPROC_ENV] = self.path  # inherited by the workers started next
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.path)
        self.server = serve(registry, self.settings)
        return self

    def worker_died(self, pid: int) -> None:
        """A worker's gauges stop counting (its counters keep counting)."""
        if self.path:
            from prometheus_client import multiprocess
            multiprocess.mark_process_dead(pid, self.path)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.path and self._own_dir:
            shutil.rmtree(self.path, ignore_errors=True)
        os.environ.pop(MULTIPROC_ENV, None)
