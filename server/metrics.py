"""Prometheus metrics of the middleware (issue #25): `GET <base_url>/metrics`.

Counted in this process: request latency by route pattern, method and status; job
transitions made here. Read at scrape time, so that they are right however many
middlewares and workers run: jobs by status and HPC (the store), HPC reachability, worker
heartbeats, queue depth per HPC (rq's Redis lists), artifact store usage (uploads and
results, ArtifactStore.usage, cached a few seconds), hub lookups and token cache hits
(the authenticator's own counts). docs/metrics.md lists them all.

Access follows JupyterHub's own /hub/metrics (`JupyterHub.authenticate_prometheus`, on by
default): a token is needed — Metrics.token (Prometheus' bearer token) or the hub token of
an admin. Not "loopback only": behind the hub's proxy every request comes from loopback.
"""
from __future__ import annotations

import datetime as dt
import hmac
import logging
import os
import threading
import time
import weakref

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from rq import Queue
from sqlalchemy import func
from sqlmodel import select
from tornado.ioloop import IOLoop
from traitlets import Bool, Unicode, default
from traitlets.config import Configurable

from hpcbridge.clock import aware, utcnow
from hpcbridge.lifecycle import STATUSES, TIMESTAMPS, JobStatus, sources_of
from hpcbridge.taskqueue import queue_name

from . import errors as E
from .handlers.base import APIHandler
from .models import Job

log = logging.getLogger("hpcbridge.server")
S = JobStatus

# time in a state: from a second (a quick staging) to a day (a long job's run)
STATE_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600,
                 86400)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
ARTIFACT_CACHE_SECONDS = 10.0  # a walk of the artifact folders is reused this long
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
REQUEST_SECONDS = Histogram(
    "hpcbridge_http_request_duration_seconds", "Middleware requests by route pattern, "
    "method and status", ["route", "method", "status"], buckets=REQUEST_BUCKETS,
    registry=REGISTRY)
TRANSITIONS = Counter("hpcbridge_job_transitions", "Job status changes made by this process",
                      ["hpc", "status"], registry=REGISTRY)
STATE_SECONDS = Histogram("hpcbridge_job_state_seconds", "Time jobs spent in a status, "
                          "observed when they leave it", ["hpc", "state"],
                          buckets=STATE_BUCKETS, registry=REGISTRY)


class Metrics(Configurable):
    """Who may read the middleware's /metrics."""

    authenticate = Bool(True, help="""As JupyterHub's authenticate_prometheus: /metrics
        needs Metrics.token or the hub token of an admin. False: anyone who can reach the
        middleware reads it (only where the network keeps others out).""").tag(config=True)
    token = Unicode(help="""A bearer token for Prometheus (`authorization:` in its scrape
        config). Default: $HPCBRIDGE_METRICS_TOKEN.""").tag(config=True)

    @default("token")
    def _token(self):
        return os.environ.get("HPCBRIDGE_METRICS_TOKEN", "")


def routes(base_url: str) -> list[tuple]:
    """(pattern, handler) pairs under the middleware's base URL (/metrics)."""
    return [(rf"{base_url.rstrip('/')}/metrics", MetricsHandler)]


# --- request latency ---------------------------------------------------------------------
def readable(pattern: str) -> str:
    """A route regex as a label: named groups become {name} (no id ever reaches a label)."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("(?P<", i):
            end = pattern.index(">", i)
            depth, j = 1, end + 1
            while depth and j < len(pattern):
                if pattern[j] == "\\":
                    j += 2
                    continue
                depth += (pattern[j] == "(") - (pattern[j] == ")")
                j += 1
            out.append("{" + pattern[i + 4:end] + "}")
            i = j
        else:
            out.append(pattern[i])
            i += 1
    return "".join(out).rstrip("$")


_ROUTES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def route_of(handler) -> str:
    """The route pattern that served a request; "(unmatched)" for the default handler."""
    app = handler.application
    rules = _ROUTES.get(app)
    if rules is None:
        rules = [(r.matcher.regex, r.target, readable(r.matcher.regex.pattern))
                 for r in app.wildcard_router.rules if hasattr(r.matcher, "regex")]
        _ROUTES[app] = rules
    path = handler.request.path
    for regex, target, label in rules:
        if target is type(handler) and regex.match(path):
            return label
    return "(unmatched)"


def observe_request(handler) -> None:
    """Called once per finished request (the log function): latency by route and status."""
    try:
        method = handler.request.method if handler.request.method in METHODS else "other"
        REQUEST_SECONDS.labels(route_of(handler), method, str(handler.get_status())).observe(
            handler.request.request_time())
        ctx = handler.settings.get("ctx")
        if ctx is not None:
            TransitionObserver.install(ctx.store, TRANSITIONS, STATE_SECONDS)
    except Exception:  # metrics never break a request
        log.debug("could not observe a request", exc_info=True)


# --- transitions and time in each state ----------------------------------------------------
def time_in_state(job, to: str, finishing_at: dt.datetime | None = None,
                  now: dt.datetime | None = None) -> tuple[str, float] | None:
    """(the status a job just left for `to`, seconds it spent there), from its timestamps
    (each stamped anew when the status is entered again); finishing has no column: its
    entry time is the finishing event's. None when it cannot be told."""
    column = TIMESTAMPS.get(to)
    entered_to = aware(getattr(job, column)) if column else None
    entered_to = entered_to or now or utcnow()
    entered = {s: aware(getattr(job, TIMESTAMPS[s])) for s in sources_of(to)
               if s in TIMESTAMPS}
    if S.FINISHING in sources_of(to):
        entered[S.FINISHING] = aware(finishing_at)
    known = {s: t for s, t in entered.items() if t is not None and t <= entered_to}
    if not known:
        return None
    state = max(known, key=lambda s: known[s])
    return str(state), max(0.0, (entered_to - known[state]).total_seconds())


class TransitionObserver:
    """A Store.transition_hooks entry: counts a transition and observes the time the job
    spent in the status it left. One per process and store."""

    def __init__(self, store, transitions, state_seconds):
        self.store, self.transitions, self.state_seconds = store, transitions, state_seconds

    @classmethod
    def install(cls, store, transitions, state_seconds) -> None:
        hooks = type(store).transition_hooks
        if not any(isinstance(h, cls) and h.store is store for h in hooks):
            hooks.append(cls(store, transitions, state_seconds))

    def __call__(self, job_id: str, status: str) -> None:
        job = self.store.get_job(job_id)
        if job is not None:
            self._observe(job, status)

    def many(self, job_ids: list[str], status: str) -> None:
        """A batch's transition (Store.transition_many): its jobs read in one query."""
        for job in self.store.get_jobs(job_ids).values():
            self._observe(job, status)

    def _observe(self, job, status: str) -> None:
        self.transitions.labels(job.hpc, str(status)).inc()
        finishing_at = None
        if status in (S.SUCCEEDED, S.FAILED, S.CANCELLED):
            times = [e.time for e in self.store.events(job.id) if e.type == S.FINISHING]
            finishing_at = times[-1] if times else None
        spent = time_in_state(job, status, finishing_at)
        if spent is not None:
            self.state_seconds.labels(job.hpc, spent[0]).observe(spent[1])


# --- read at scrape time -------------------------------------------------------------------
class _FolderSizes:
    """(bytes, files) of each kind of artifact (ArtifactStore.usage), measured at most
    every ARTIFACT_CACHE_SECONDS."""

    def __init__(self):
        self._lock = threading.Lock()
        self._at: dict[tuple[int, str], tuple[float, int, int]] = {}

    def get(self, artifacts, kind: str) -> tuple[int, int]:
        key = (id(artifacts), kind)
        with self._lock:
            cached = self._at.get(key)
            if cached and time.monotonic() - cached[0] < ARTIFACT_CACHE_SECONDS:
                return cached[1], cached[2]
            size, files = artifacts.usage(kind)
            self._at[key] = (time.monotonic(), size, files)
            return size, files


FOLDER_SIZES = _FolderSizes()


class ScrapeCollector:
    """What the store, Redis, the artifact folders and the authenticator say now."""

    def __init__(self, ctx):
        self.ctx = ctx

    def collect(self):
        errors = GaugeMetricFamily("hpcbridge_scrape_error", "1 when a part of the scrape "
                                   "could not be read (its metrics are missing)", labels=["part"])
        for part, read in (("store", self._store), ("queue", self._queues),
                           ("artifacts", self._artifacts), ("auth", self._auth)):
            try:
                yield from read()
                errors.add_metric([part], 0)
            except Exception as exc:  # a part that cannot be read is said so, not a 500
                log.warning("metrics: cannot read %s: %s", part, exc)
                errors.add_metric([part], 1)
        yield errors

    def _store(self):
        store, hpcs = self.ctx.store, list(self.ctx.hpcs)
        jobs = GaugeMetricFamily("hpcbridge_jobs", "Jobs by HPC and status", labels=["hpc", "status"])
        with store.session() as s:
            counts = {(h, st): n for h, st, n in s.exec(
                select(Job.hpc, Job.status, func.count()).group_by(Job.hpc, Job.status))}
        for hpc in sorted(set(hpcs) | {h for h, _ in counts}):
            for status in STATUSES:
                jobs.add_metric([hpc, status], counts.get((hpc, status), 0))
        reachable = GaugeMetricFamily("hpcbridge_hpc_reachable", "1 when the HPC answered "
                                      "its last poll, 0 when not", labels=["hpc"])
        draining = GaugeMetricFamily("hpcbridge_hpc_draining", "1 while an admin drains the "
                                     "HPC", labels=["hpc"])
        for hpc in hpcs:
            state = store.hpc_state(hpc)
            if state.reachable is not None:
                reachable.add_metric([hpc], int(bool(state.reachable)))
            draining.add_metric([hpc], int(bool(state.draining)))
        yield from (jobs, reachable, draining)
        yield from self._workers()

    def _workers(self):
        now, timeout = utcnow(), self.ctx.site.worker_timeout
        workers = self.ctx.store.workers()
        age = GaugeMetricFamily("hpcbridge_worker_heartbeat_age_seconds", "Seconds since "
                                "each maintainer worker's last heartbeat", labels=["worker"])
        for w in workers:
            age.add_metric([w.id], (now - aware(w.heartbeat_at)).total_seconds())
        alive = GaugeMetricFamily("hpcbridge_workers", "Maintainer workers in the store, "
                                  "alive or dead (no heartbeat for Site.worker_timeout)",
                                  labels=["state"])
        n_alive = sum(1 for w in workers if w.alive(timeout, now))
        alive.add_metric(["alive"], n_alive)
        alive.add_metric(["dead"], len(workers) - n_alive)
        yield from (age, alive)

    def _queues(self):
        depth = GaugeMetricFamily("hpcbridge_queue_depth", "Tasks waiting in each HPC's rq "
                                  "queue", labels=["hpc"])
        redis, prefix = self.ctx.queue.redis, self.ctx.site.queue_prefix
        pipe = redis.pipeline(transaction=False)
        for hpc in self.ctx.hpcs:
            pipe.llen(Queue.redis_queue_namespace_prefix + queue_name(prefix, hpc))
        for hpc, n in zip(self.ctx.hpcs, pipe.execute()):
            depth.add_metric([hpc], n)
        yield depth

    def _artifacts(self):
        size = GaugeMetricFamily("hpcbridge_artifact_bytes", "Bytes in the artifact store",
                                 labels=["store"])
        files = GaugeMetricFamily("hpcbridge_artifact_files", "Files in the artifact store",
                                  labels=["store"])
        for name in ("uploads", "results"):
            n_bytes, n_files = FOLDER_SIZES.get(self.ctx.site.artifacts, name)
            size.add_metric([name], n_bytes)
            files.add_metric([name], n_files)
        yield from (size, files)

    def _auth(self):
        auth = self.ctx.authenticator
        lookups = CounterMetricFamily("hpcbridge_hub_lookups", "Token lookups at the "
                                      "identity source (JupyterHub) by result",
                                      labels=["result"])
        for result in ("user", "denied", "unknown", "error"):
            lookups.add_metric([result], auth.lookup_results.get(result, 0))
        cache = CounterMetricFamily("hpcbridge_auth_cache_requests", "Authenticated "
                                    "requests by token cache outcome: hit, miss (a lookup), "
                                    "shared (waited for a lookup in flight)",
                                    labels=["result"])
        for result in ("hit", "miss", "shared"):
            cache.add_metric([result], auth.cache_results.get(result, 0))
        yield from (lookups, cache)


class _Scrape:
    def __init__(self, ctx):
        self.parts = (REGISTRY, ScrapeCollector(ctx))

    def collect(self):
        for part in self.parts:
            yield from part.collect()


def exposition(ctx) -> bytes:
    """The text exposition of everything above (blocking: the store, Redis, a walk)."""
    return generate_latest(_Scrape(ctx))


class MetricsHandler(APIHandler):
    auth_required = False

    async def authenticate(self) -> None:
        settings = Metrics(config=self.ctx.site.config)
        if not settings.authenticate:
            return
        token = self.token()
        if token and settings.token and hmac.compare_digest(token, settings.token):
            return
        if not token:
            raise E.Unauthorized("/metrics needs a token: Metrics.token or an admin's hub token")
        self.user = await self.ctx.authenticator.authenticate(token)
        self.require_admin()

    async def get(self):
        body = await IOLoop.current().run_in_executor(None, exposition, self.ctx)
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(body)
