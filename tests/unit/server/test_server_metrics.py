"""The middleware's metrics (server/metrics.py): route patterns as labels, time in each
state from a job's timestamps, the transition hook on a real store, and /metrics itself on
a real tornado server — who may read it, and what the scrape reads from the store, Redis,
the artifact folders and the authenticator (a part that cannot be read is said so)."""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.parser import text_string_to_metric_families
from services import free_port
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets.config import Config

from hpcbridge.config import Site
from hpcbridge.lifecycle import JobStatus as S
from hpcbridge.server import metrics as M
from hpcbridge.server.auth import StaticTokenAuthenticator
from hpcbridge.server.models import Job
from hpcbridge.server.queue import JobQueue
from hpcbridge.server.store import Store

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_route_patterns_become_readable_labels():
    assert M.readable(r"/api/v1/jobs/(?P<job_id>[0-9a-f]{32})/results/(?P<rel>.*)$") == \
        "/api/v1/jobs/{job_id}/results/{rel}"
    assert M.readable(r"/api/v1/jobs/(?P<job_id>[^/]+)(?:/.*)?") == \
        "/api/v1/jobs/{job_id}(?:/.*)?"
    assert M.readable(r"/x/(?P<a>(b|c)\))/y") == "/x/{a}/y"


def test_time_in_state_from_the_timestamps():
    job = Job(user="a", app="x", hpc="h", queued_at=at(0), staging_at=at(5))
    assert M.time_in_state(job, S.STAGING) == ("queued", 5.0)
    job.queued_at = at(7)  # sent back to queued: stamped anew
    assert M.time_in_state(job, S.QUEUED) == ("staging", 2.0)
    job.staging_at, job.submitted_at, job.started_at = at(10), at(12), at(20)
    assert M.time_in_state(job, S.SUBMITTED) == ("staging", 2.0)
    assert M.time_in_state(job, S.RUNNING) == ("submitted", 8.0)
    assert M.time_in_state(job, S.FINISHING, now=at(50)) == ("running", 30.0)
    job.finished_at = at(53)
    assert M.time_in_state(job, S.SUCCEEDED, finishing_at=at(50)) == ("finishing", 3.0)
    assert M.time_in_state(job, S.FAILED) == ("running", 33.0)  # no finishing event
    fresh = Job(user="a", app="x", hpc="h", queued_at=at(0), finished_at=at(4))
    assert M.time_in_state(fresh, S.CANCELLED) == ("queued", 4.0)
    assert M.time_in_state(Job(user="a", app="x", hpc="h"), S.STAGING) is None


def test_the_transition_hook_counts_and_times_on_a_real_store(tmp_path):
    registry = CollectorRegistry()
    transitions = Counter("t", "t", ["hpc", "status"], registry=registry)
    seconds = Histogram("s", "s", ["hpc", "state"], registry=registry)
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    hooks = list(Store.transition_hooks)
    try:
        M.TransitionObserver.install(store, transitions, seconds)
        M.TransitionObserver.install(store, transitions, seconds)  # once per store
        assert len(Store.transition_hooks) == len(hooks) + 1
        job = store.create_job(user="alice", app="x", hpc="h1", params={}, resources={})
        for to in (S.STAGING, S.QUEUED, S.STAGING, S.SUBMITTED, S.RUNNING, S.FINISHING,
                   S.SUCCEEDED):
            assert store.transition(job.id, to, "moved")
        assert not store.transition(job.id, S.RUNNING, "refused: nothing counted")
    finally:
        Store.transition_hooks[:] = hooks
    get = registry.get_sample_value
    assert get("t_total", {"hpc": "h1", "status": "staging"}) == 2
    assert get("t_total", {"hpc": "h1", "status": "succeeded"}) == 1
    assert get("t_total", {"hpc": "h1", "status": "running"}) == 1
    for state, n in (("queued", 2), ("staging", 2), ("submitted", 1), ("running", 1),
                     ("finishing", 1)):
        assert get("s_count", {"hpc": "h1", "state": state}) == n, state


# --- /metrics on a real tornado server ---------------------------------------------------------
class Hello(web.RequestHandler):
    def get(self, job_id=None):
        self.write("hi")


@pytest.fixture
async def served(tmp_path):
    """/metrics and two plain routes under /base, with a real store, an embedded Redis and
    static tokens; yields (url, ctx)."""
    config = Config({"Site": {"data_dir": str(tmp_path / "data"), "apps": [],
                              "hpcs": [{"id": "local", "scheduler": "local",
                                        "work_root": str(tmp_path / "work")}]},
                     "Metrics": {"token": "prom-token"}})
    site = Site(config=config)
    ctx = SimpleNamespace(
        site=site, store=Store(f"sqlite:///{tmp_path / 'db.sqlite'}"), queue=JobQueue(site),
        hpcs=site.hpc_configs(), authenticator=StaticTokenAuthenticator(
            tokens={"t-alice": "alice", "t-admin": "admin"}, admin_users={"admin"}))
    app = web.Application([(r"/base/api/v1/jobs/(?P<job_id>[0-9a-f]{32})", Hello),
                           (r"/base/api/v1/jobs", Hello), *M.routes("/base/")],
                          ctx=ctx, log_function=M.observe_request)
    server, port = HTTPServer(app), free_port()
    server.listen(port, "127.0.0.1")
    hooks, queue = list(Store.transition_hooks), ctx.queue
    yield f"http://127.0.0.1:{port}/base", ctx
    Store.transition_hooks[:] = hooks
    server.stop()
    queue.close()
    ctx.store.close()


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


async def test_who_may_read_metrics_and_what_a_scrape_says(served, tmp_path):
    url, ctx = served
    async with httpx.AsyncClient(timeout=30) as http:
        async def get(token=None):
            headers = {"Authorization": f"token {token}"} if token else {}
            return await http.get(f"{url}/metrics", headers=headers)

        for token, status, code in ((None, 401, "unauthorized"), ("nope", 401, "unauthorized"),
                                    ("t-alice", 403, "forbidden")):
            r = await get(token)
            assert (r.status_code, r.json()["error"]) == (status, code)
        assert (await get("t-admin")).status_code == 200

        job = ctx.store.create_job(user="alice", app="x", hpc="local", params={},
                                   resources={})
        assert ctx.queue.advance(job.id, "local")  # a task for the (absent) workers
        results = tmp_path / "data" / "results" / "j1"
        results.mkdir(parents=True)
        (results / "out.txt").write_bytes(b"x" * 1000)
        M.FOLDER_SIZES._at.clear()  # no cached walk from the scrape above
        await http.get(f"{url}/api/v1/jobs/{'ab' * 16}")
        r = await get("prom-token")
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
        got = samples(r.text)
        assert got[("hpcbridge_jobs", (("hpc", "local"), ("status", "queued")))] == 1
        assert got[("hpcbridge_jobs", (("hpc", "local"), ("status", "running")))] == 0
        assert got[("hpcbridge_queue_depth", (("hpc", "local"),))] == 1
        assert got[("hpcbridge_artifact_bytes", (("store", "results"),))] == 1000
        assert got[("hpcbridge_hub_lookups_total", (("result", "user"),))] == 2
        assert got[("hpcbridge_hub_lookups_total", (("result", "unknown"),))] == 1
        assert got[("hpcbridge_auth_cache_requests_total", (("result", "miss"),))] == 3
        assert got[("hpcbridge_workers", (("state", "alive"),))] == 0
        assert all(v == 0 for (n, _), v in got.items() if n == "hpcbridge_scrape_error")
        route = (("method", "GET"), ("route", "/base/api/v1/jobs/{job_id}"), ("status", "200"))
        assert got[("hpcbridge_http_request_duration_seconds_count", route)] >= 1
        assert "ab" * 16 not in r.text and "prom-token" not in r.text

        ctx.queue = SimpleNamespace(redis=None)  # Redis unusable: said so, no 500
        got = samples((await get("prom-token")).text)
        assert got[("hpcbridge_scrape_error", (("part", "queue"),))] == 1
        assert ("hpcbridge_jobs", (("hpc", "local"), ("status", "queued"))) in got

        ctx.site.config.Metrics.authenticate = False  # open, as a site may choose
        assert (await get()).status_code == 200
