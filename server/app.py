"""`hpcbridge server`: the middleware (tornado), configured with traitlets."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field

from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Float, Int, Type, Unicode, default

from hpcbridge import __version__
from hpcbridge.artifacts import SharedFolderArtifacts, check_at_start
from hpcbridge.config import ConfigFileApp, Site
from hpcbridge.notifyrules import Notifier
from hpcbridge.sessionconfig import SessionSettings

from . import handlers as H
from . import metrics
from .apps import fetch_app
from .auth import Authenticator, HubAuthenticator, StaticTokenAuthenticator
from .compat.cybergis import CyberGISCompat
from .errors import APIError
from .eventbus import EventBus
from .eventcursor import GRACE_SECONDS
from .handlers import admin, sessions, sweeps
from .limits import DEFAULT_MAX_BODY_BYTES, Slots
from .openapi import build_openapi
from .queue import JobQueue
from .secrets import hide_password, loggable_path, redact
from .sessiontunnels import Tunnels
from .store import Store
from .uploadstore import clean_up, private_dir

log = logging.getLogger("hpcbridge.server")
ARTIFACT_RECHECK_SECONDS = 5.0  # Redis was away at start: the store is checked this often
BODY_SLACK = 64 << 10  # one read chunk: the handler sees the body pass its bound first
# Ctrl-C, a service manager's stop, and the terminal closing (SIGHUP) all stop it cleanly
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class ServerContext:
    site: Site
    store: Store
    queue: JobQueue
    authenticator: Authenticator
    hpcs: dict
    api_prefix: str
    openapi: dict
    max_upload_bytes: int
    sse_interval: float
    sse_grace: float = GRACE_SECONDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    upload_quota_bytes: int = 10 << 30
    upload_max_age: float = 7 * 86400.0
    upload_body_timeout: float = 3600.0
    stream_slots: Slots = field(default_factory=lambda: Slots("event streams", 8))
    upload_slots: Slots = field(default_factory=lambda: Slots("uploads", 2))
    stopping: asyncio.Event = field(default_factory=asyncio.Event)  # set: streams end
    session_settings: SessionSettings = field(default_factory=SessionSettings)
    # SSH port forwarding to session services: one connector pool per HPC, made on first use
    tunnels: Tunnels | None = None


def make_routes(prefix: str):
    p = prefix.rstrip("/")
    jid = r"(?P<job_id>[0-9a-f]{32})"
    return [
        (rf"{p}/health", H.HealthHandler),
        (rf"{p}/spec", H.SpecHandler),
        (rf"{p}/me", H.MeHandler),
        (rf"{p}/hpcs", H.HPCsHandler),
        (rf"{p}/apps", H.AppsHandler),
        (rf"{p}/apps/(?P<app_id>[^/]+)", H.AppHandler),
        (rf"{p}/jobs", H.JobsHandler),
        (rf"{p}/jobs/{jid}", H.JobHandler),
        (rf"{p}/jobs/{jid}/events", H.JobEventsHandler),
        (rf"{p}/jobs/{jid}/logs", H.JobLogsHandler),
        (rf"{p}/jobs/{jid}/cancel", H.JobCancelHandler),
        (rf"{p}/jobs/{jid}/results", H.ResultsHandler),
        (rf"{p}/jobs/{jid}/results/(?P<rel>.*)", H.ResultFileHandler),
        (rf"{p}/jobs/(?P<job_id>[^/]+)(?:/.*)?", H.NotFoundHandler),
        (rf"{p}/uploads", H.UploadHandler),
        (rf"{p}/events/stream", H.EventStreamHandler),
        *admin.routes(p, jid), *sweeps.routes(p), *sessions.routes(p),
    ]


class HPCBridgeServer(ConfigFileApp):
    name = "hpcbridge-server"
    version = __version__
    description = "The hpcbridge middleware: REST API, job store and queue."
    classes = [Site, SharedFolderArtifacts, HubAuthenticator, StaticTokenAuthenticator,
               CyberGISCompat, SessionSettings, Notifier, metrics.Metrics, EventBus]
    aliases = {"ip": "HPCBridgeServer.ip", "port": "HPCBridgeServer.port",
               "config": "HPCBridgeServer.config_file", "data-dir": "Site.data_dir",
               "artifacts": "SharedFolderArtifacts.root", "db-url": "Site.db_url",
               "redis-url": "Site.redis_url", "log-level": "Application.log_level"}
    flags = {"generate-config": ({"HPCBridgeServer": {"generate_config": True}},
                                 "write hpcbridge_config.py with every setting, commented")}

    exit_code = 0  # 1: stopped because the artifact store is not the site's
    artifacts_checked = False
    ip = Unicode("127.0.0.1", help="Address to listen on.").tag(config=True)
    port = Int(8710, help="Port to listen on.").tag(config=True)
    base_url = Unicode("/", help="URL prefix, e.g. /services/hpcbridge/ behind JupyterHub's "
                                 "proxy. Default: $JUPYTERHUB_SERVICE_PREFIX or /."
                       ).tag(config=True)

    @default("base_url")
    def _base_url(self):
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")

    authenticator_class = Type(HubAuthenticator, klass=Authenticator,
                               help="How tokens become users: HubAuthenticator (JupyterHub) "
                                    "or StaticTokenAuthenticator.").tag(config=True)
    max_upload_size = Int(1 << 30, help="Largest upload in bytes.").tag(config=True)
    max_body_size = Int(DEFAULT_MAX_BODY_BYTES, help="Largest request body in bytes on "
                        "every route but uploads (whose bound, max_upload_size, applies only "
                        "once the caller is known).").tag(config=True)
    upload_quota = Int(10 << 30, help="Bytes of uploads each user may hold at once."
                       ).tag(config=True)
    upload_max_age = Float(7 * 86400.0, help="Seconds after which an upload that no job "
                           "still to end uses is removed.").tag(config=True)
    cleanup_interval = Float(600.0, help="Seconds between two clean-ups of expired uploads "
                             "and stale upload temp files.").tag(config=True)
    max_streams_per_user = Int(8, help="Event streams one user may hold open at once."
                               ).tag(config=True)
    max_uploads_per_user = Int(2, help="Uploads one user may send at once.").tag(config=True)
    idle_connection_timeout = Float(75.0, help="Seconds a connection may stay open without "
                                    "a request (also the bound on sending the headers)."
                                    ).tag(config=True)
    body_timeout = Float(60.0, help="Seconds a client may take to send a request body "
                         "(uploads: upload_body_timeout).").tag(config=True)
    upload_body_timeout = Float(3600.0, help="Seconds an authenticated upload may take."
                                ).tag(config=True)
    sse_interval = Float(1.0, help="Seconds between checks for job changes in the event "
                                   "stream.").tag(config=True)
    sse_grace = Float(GRACE_SECONDS, help="Seconds the event stream waits for an event id "
                                          "that is missing (a write still being committed) "
                                          "before it goes on without it.").tag(config=True)

    def initialize(self, argv=None):
        super().initialize(argv)
        if self.generate_config:
            return
        os.umask(0o077)  # everything this service creates is its own: data, uploads, db
        self.site = Site(parent=self)
        private_dir(self.site.data_dir)
        self.ctx = self.make_context()

    def make_context(self) -> ServerContext:
        store = open_store(self.site, self.log)
        hpcs = self.site.hpc_configs()
        queue = JobQueue(self.site)
        # before anything is written into the artifact store
        self.artifacts_checked = self.check_artifacts(queue)
        self.register_apps(store)
        prefix = self.base_url.rstrip("/") + "/api/v1/"
        return ServerContext(
            site=self.site, store=store, queue=queue,
            authenticator=self.authenticator_class(parent=self), hpcs=hpcs,
            api_prefix=prefix, openapi=build_openapi(prefix.rstrip("/")),
            max_upload_bytes=self.max_upload_size, sse_interval=self.sse_interval,
            sse_grace=self.sse_grace, max_body_bytes=self.max_body_size,
            upload_quota_bytes=self.upload_quota, upload_max_age=self.upload_max_age,
            upload_body_timeout=self.upload_body_timeout,
            stream_slots=Slots("event streams", self.max_streams_per_user),
            upload_slots=Slots("uploads", self.max_uploads_per_user),
            session_settings=SessionSettings(parent=self),
            tunnels=Tunnels(hpcs, self.site.handler_registry()))

    def check_artifacts(self, queue: JobQueue) -> bool:
        """Whether this process sees the site's artifact store (hpcbridge.artifacts): exit
        at once when it does not; False when Redis cannot say now (checked again every
        ARTIFACT_RECHECK_SECONDS)."""
        return check_at_start(self.site.artifacts, queue.redis, self.site.queue_prefix,
                              self.log, 1)

    async def check_artifacts_until_done(self, stop: asyncio.Event) -> None:
        """The start-up check, once Redis answers; a store that is not the site's stops
        the middleware (exit code 1)."""
        loop = asyncio.get_running_loop()
        while not self.artifacts_checked and not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), ARTIFACT_RECHECK_SECONDS)
                return
            except asyncio.TimeoutError:
                pass
            try:
                self.artifacts_checked = await loop.run_in_executor(
                    None, self.check_artifacts, self.ctx.queue)
            except SystemExit:
                self.exit_code = 1
                stop.set()
                return

    def register_apps(self, store: Store) -> None:
        for source in self.site.apps:
            try:
                store.put_app(fetch_app(source, self.site.artifacts))
            except APIError as exc:
                self.log.error("app %s not registered: %s", source, exc.message)

    def make_app(self) -> web.Application:
        base = self.base_url.rstrip("/")
        routes = [*make_routes(base + "/api/v1"), *metrics.routes(base),
                  *CyberGISCompat(parent=self).routes(base)]
        return web.Application(routes, ctx=self.ctx,
                               default_handler_class=H.NotFoundHandler,
                               log_function=self._log_request)

    def _log_request(self, handler):
        # never log query strings or headers: tokens must not reach logs
        metrics.observe_request(handler)
        status = handler.get_status()
        level = logging.INFO if status < 400 else logging.WARNING
        if status >= 500:
            level = logging.ERROR
        self.log.log(level, "%d %s %s %.1fms", status, handler.request.method,
                     loggable_path(handler.request.path, status),
                     1000 * handler.request.request_time())

    def start(self):
        if self.generate_config:
            self.write_config_file()
            return
        try:
            asyncio.run(self.serve())
        except KeyboardInterrupt:  # a second Ctrl-C while stopping: stop now, quietly
            pass
        if self.exit_code:
            self.exit(self.exit_code)

    async def serve(self, ready: asyncio.Event | None = None):
        # bodies past max_body_size are refused unread (the upload route lifts it for a
        # known caller); a slow or idle client holds a connection only for a bounded time
        server = HTTPServer(self.make_app(), xheaders=True,
                            max_body_size=self.max_body_size + BODY_SLACK,
                            max_buffer_size=self.max_body_size + BODY_SLACK,
                            idle_connection_timeout=self.idle_connection_timeout,
                            body_timeout=self.body_timeout)
        server.listen(self.port, self.ip)
        cleaner = asyncio.ensure_future(self.clean_up_periodically())
        # the event bus at start, not at the first stream: this process's own events
        # (POST /jobs, cancels) are published even while no stream is open here
        H.events.event_bus(self.ctx)
        stop = asyncio.Event()
        checker = asyncio.ensure_future(self.check_artifacts_until_done(stop))
        self.log.info("hpcbridge middleware %s on http://%s:%d%s", __version__, self.ip,
                      self.port, self.base_url.rstrip("/") + "/api/v1")
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        if ready is not None:
            ready.set()
        try:
            await stop.wait()
        finally:
            cleaner.cancel()
            checker.cancel()
            for sig in STOP_SIGNALS:
                try:
                    loop.remove_signal_handler(sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass
            await self.shutdown(server)

    async def clean_up_periodically(self) -> None:
        """Expired uploads and stale upload temp files, now and every cleanup_interval."""
        loop = asyncio.get_running_loop()
        while not self.ctx.stopping.is_set():
            await loop.run_in_executor(None, clean_up, self.ctx)
            try:
                await asyncio.wait_for(self.ctx.stopping.wait(), self.cleanup_interval)
            except asyncio.TimeoutError:
                pass

    async def shutdown(self, server: HTTPServer) -> None:
        """Stop listening, end the event streams, close connections, the queue and the
        store: a clean exit on SIGTERM, SIGHUP and Ctrl-C alike."""
        self.log.info("stopping the middleware")
        server.stop()
        self.ctx.stopping.set()
        try:  # streams end at their next wake-up; a stuck connection does not hold the exit
            await asyncio.wait_for(server.close_all_connections(), 10)
        except asyncio.TimeoutError:
            self.log.warning("connections still open after 10 s: leaving them")
        self.ctx.queue.close()
        if self.ctx.tunnels is not None:
            await self.ctx.tunnels.close()
        self.ctx.store.close()


def open_store(site: Site, log) -> Store:
    """The store; a database that cannot be opened is one line in the log, its URL
    without the password, and no traceback (which could show it)."""
    from sqlalchemy.exc import SQLAlchemyError
    url = site.db_url
    shown = hide_password(url)
    log.info("database %s", shown)
    try:
        return Store(url, max_log_bytes=site.max_log_bytes)
    except (SQLAlchemyError, OSError, ValueError) as exc:
        log.critical("cannot open the database %s: %s", shown,
                     redact(f"{type(exc).__name__}: {exc}", url))
        raise SystemExit(1) from None


main = HPCBridgeServer.launch_instance
