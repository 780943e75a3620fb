"""Prometheus metrics during a real run (issue #25): the middleware and a pool of two
maintainer workers (tests/services.py) on the stack's Slurm, JupyterHub and Redis, one more
HPC that cannot be reached, and the stack's Prometheus scraping both through a targets file.

The counters must move with the jobs: jobs by status, transitions and time in each state,
the commands of the poll cycles equal to those the poller's own statistics counted in
Redis (maintainer/stats.py), requests by route pattern. Prometheus must have scraped them
(with its bearer token), and docs/grafana-dashboard.json must use only metric names a
scrape shows, each of its queries accepted by Prometheus."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from services import Services, free_port, remove_remote, slurm_hpc, wait_for_sshd

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docs" / "grafana-dashboard.json"
JOBS = 3
METRIC_NAME = re.compile(r"\bhpcbridge_[a-z0-9_]+")


# --- helpers ------------------------------------------------------------------------------------
def scrape(url: str, token: str | None) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of one /metrics answer (must be 200)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.get(url, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def wait_until(check, timeout: float, what: str, pause: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(pause)
    raise AssertionError(f"{what}: not true within {timeout} s (last: {last})")


def answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
        return True
    except httpx.TransportError:
        return False


def prom_query(prom: dict, query: str) -> list[dict]:
    r = httpx.get(f"{prom['url']}/api/v1/query", params={"query": query}, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", (query, body)
    return body["data"]["result"]


def dashboard_exprs(dashboard: dict) -> list[str]:
    panels = list(dashboard["panels"])
    for row in dashboard["panels"]:
        panels += row.get("panels", [])
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def register_app(svc: Services, stack: dict, tmp: Path) -> str:
    """A one-line app for both HPCs, registered by the hub's admin; its id."""
    folder = tmp / "apps" / "greet"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({
        "name": "greet", "supported_hpc": ["slurm", "down", "nopart"],
        "execution_stage": "echo metered > \"$HPCBRIDGE_RESULT_DIR/out.txt\"",
        "slurm_input_rules": {"time": {"min": 1, "max": 5, "default_value": 2, "step": 1,
                                       "unit": "Minutes"},
                              "partition": {}}}))  # one of the HPC's, if asked for
    r = svc.client(stack["hub"]["tokens"]["admin"]).post("apps", json={"source": str(folder)})
    assert r.status_code == 201, r.text
    return r.json()["id"]


# --- the run -----------------------------------------------------------------------------------
@pytest.fixture
def prometheus(stack):
    prom = stack.get("prometheus")
    if not prom:
        pytest.skip("the stack has no Prometheus (bash stack/up.sh prometheus)")
    try:
        httpx.get(f"{prom['url']}/-/ready", timeout=3).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.fail(f"the stack's Prometheus does not answer: {exc} (bash stack/up.sh)")
    return prom


@pytest.fixture
def metered(tmp_path, stack, hub, redis_url, prometheus, request):
    """Services with /metrics on the middleware and the maintainer pool, both Prometheus
    targets (labelled run=<run_id>) for as long as the test runs."""
    wait_for_sshd(stack)
    request.getfixturevalue("ssh_target")
    token = Path(prometheus["token_file"]).read_text().strip()
    svc = Services(str(tmp_path / "svc"), stack, workers=2, auth="hub")
    pool_port = free_port()
    svc.hpcs = [slurm_hpc(stack, svc.run_id, capacity=JOBS),
                slurm_hpc(stack, svc.run_id, id="down", name="Unreachable", port=free_port(),
                          connect_retries=1, connect_timeout=2.0),
                slurm_hpc(stack, svc.run_id, id="nopart", name="No such partition",
                          partitions=["nosuchpartition"])]
    svc.extra_config = "\n".join([
        f"c.Metrics.token = {token!r}",
        f"c.MaintainerMetrics.port = {pool_port}",
        f"c.MaintainerMetrics.token = {token!r}"])
    targets = Path(prometheus["targets_dir"]) / f"test-{svc.run_id}.json"
    targets.write_text(json.dumps([
        {"targets": [f"127.0.0.1:{svc.port}"],
         "labels": {"run": svc.run_id, "component": "middleware"}},
        {"targets": [f"127.0.0.1:{pool_port}"],
         "labels": {"run": svc.run_id, "component": "maintainer"}}]))
    svc.start()
    svc.pool_url = f"http://127.0.0.1:{pool_port}/metrics"
    svc.token = token
    try:
        yield svc
    finally:
        targets.unlink(missing_ok=True)
        svc.stop()
        remove_remote(stack, f"hpcbridge-it/{svc.run_id}")


def test_metrics_move_with_a_real_run(metered, stack, prometheus, redis_url):
    svc, token = metered, metered.token
    check_access(svc, stack, token)
    run_jobs(svc, stack)
    mw = check_middleware(svc, stack, token)
    check_pool(svc, token)
    pool = check_poll_commands(svc, token, redis_url)
    # sbatch's refusal was a remote error of class SchedulerError: "fail"
    assert value(pool, "hpcbridge_remote_errors_total", error="SchedulerError",
                 reading="fail") == 1, \
        "no remote error counted: is decisions.ERROR_HOOKS there (docs/metrics.md)?"
    check_prometheus(prometheus, svc.run_id)
    check_dashboard(prometheus, {n for n, _ in mw} | {n for n, _ in pool})


def check_access(svc, stack: dict, token: str) -> None:
    """Who may read /metrics: Prometheus' token or a hub admin, nobody else."""
    mw_url = f"{svc.url}/metrics"
    for headers, status in (({}, 401), ({"Authorization": "token wrong"}, 401),
                            ({"Authorization": f"token {stack['hub']['tokens']['alice']}"}, 403),
                            ({"Authorization": f"token {stack['hub']['tokens']['admin']}"}, 200)):
        r = httpx.get(mw_url, headers=headers, timeout=10)
        assert r.status_code == status, (headers.keys(), r.status_code, r.text[:200])
        if status != 200:
            assert r.json()["error"] in ("unauthorized", "forbidden")
    wait_until(lambda: answers(svc.pool_url), 30, "the pool's /metrics")
    assert httpx.get(svc.pool_url, timeout=10).status_code == 401
    assert httpx.get(svc.pool_url, headers={"Authorization": f"Bearer {token}"},
                     timeout=10).status_code == 200


def run_jobs(svc, stack: dict) -> None:
    """A few jobs on Slurm, one on the HPC nobody can reach (it stays queued), one that
    sbatch refuses (no such partition: a remote error, the job fails)."""
    alice = svc.client(stack["hub"]["tokens"]["alice"])
    app = register_app(svc, stack, Path(svc.tmp))
    ids = []
    for _ in range(JOBS):
        r = alice.post("jobs", json={"app": app, "hpc": "slurm", "params": {}})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    r = alice.post("jobs", json={"app": app, "hpc": "down", "params": {}})
    assert r.status_code == 201, r.text
    down_job = r.json()["id"]
    r = alice.post("jobs", json={"app": app, "hpc": "nopart", "params": {},
                                 "resources": {"partition": "nosuchpartition"}})
    assert r.status_code == 201, r.text
    refused = svc.wait_job(alice, r.json()["id"], timeout=180)
    assert refused["status"] == "failed" and "partition" in refused["message"], refused
    for job_id in ids:
        assert svc.wait_job(alice, job_id, timeout=180)["status"] == "succeeded"
    assert alice.get(f"jobs/{down_job}").json()["status"] == "queued"


def check_middleware(svc, stack: dict, token: str) -> dict:
    """What the middleware reads at scrape time from the store, Redis and the folders."""
    mw_url = f"{svc.url}/metrics"
    mw = scrape(mw_url, token)
    assert value(mw, "hpcbridge_jobs", hpc="slurm", status="succeeded") == JOBS
    assert value(mw, "hpcbridge_jobs", hpc="down", status="queued") == 1
    assert value(mw, "hpcbridge_jobs", hpc="slurm", status="running") == 0
    assert value(mw, "hpcbridge_workers", state="alive") == 2
    assert value(mw, "hpcbridge_hpc_reachable", hpc="slurm") == 1
    wait_until(lambda: value(scrape(mw_url, token), "hpcbridge_hpc_reachable", hpc="down") == 0
               or None, 30, "the unreachable HPC is reported")
    assert ("hpcbridge_queue_depth", (("hpc", "slurm"),)) in mw
    wait_until(lambda: value(scrape(mw_url, token), "hpcbridge_artifact_files",
                             store="results") >= JOBS or None, 15, "results counted")
    assert value(mw, "hpcbridge_scrape_error") == 0
    assert value(mw, "hpcbridge_hub_lookups_total", result="user") >= 1
    assert value(mw, "hpcbridge_auth_cache_requests_total", result="hit") >= JOBS
    posted = value(mw, "hpcbridge_http_request_duration_seconds_count",
                   route="/api/v1/jobs", method="POST", status="201")
    assert posted == JOBS + 2
    assert value(mw, "hpcbridge_http_request_duration_seconds_count",
                 route="/api/v1/jobs/{job_id}", method="GET", status="200") >= JOBS
    labels = " ".join(str(ls) for _, ls in mw)
    assert not re.search(r"[0-9a-f]{32}", labels), "a job id reached a label"
    assert token not in labels and stack["hub"]["tokens"]["alice"] not in labels
    return mw


def check_pool(svc, token: str) -> None:
    """The maintainer pool: both workers' files added up."""
    pool = scrape(svc.pool_url, token)
    assert value(pool, "hpcbridge_maintainer_workers_up") == 2
    for status in ("staging", "submitted", "running", "finishing", "succeeded"):
        assert value(pool, "hpcbridge_job_transitions_total", hpc="slurm", status=status) \
            == JOBS, status
    for state in ("queued", "staging", "submitted", "running", "finishing"):
        assert value(pool, "hpcbridge_job_state_seconds_count", hpc="slurm", state=state) \
            == JOBS, state
    assert value(pool, "hpcbridge_job_state_seconds_sum", hpc="slurm", state="running") > 0
    assert value(pool, "hpcbridge_ssh_commands_total", hpc="slurm", program="sftp") >= JOBS
    assert value(pool, "hpcbridge_ssh_channels", hpc="slurm") > 0
    assert value(pool, "hpcbridge_ssh_connections_opened_total", hpc="slurm") >= 1
    assert value(pool, "hpcbridge_poll_cycles_total", hpc="down", result="unreachable") >= 1
    assert value(pool, "hpcbridge_job_transitions_total", hpc="nopart", status="failed") == 1


def check_poll_commands(svc, token: str, redis_url: str) -> dict:
    """The poll cycles' commands equal those the poller counted in Redis (stats.py)."""
    # the poll cycles' commands, equal to those the poller counted in Redis: squeue is sent
    # only while jobs are watched, so now that they ended both stay still
    r = redis.Redis.from_url(redis_url)
    key = f"hpcbridge-test-{svc.run_id}:stats:slurm"

    def same_commands():
        before = {k.decode(): float(v) for k, v in r.hgetall(key).items()
                  if k.startswith(b"commands:")}
        now = scrape(svc.pool_url, token)
        after = {k.decode(): float(v) for k, v in r.hgetall(key).items()
                 if k.startswith(b"commands:")}
        metric = {f"commands:{dict(ls)['program']}": v for (n, ls), v in now.items()
                  if n == "hpcbridge_poll_commands_total" and dict(ls)["hpc"] == "slurm"}
        return before == after == metric and before.get("commands:squeue", 0) >= 1 and now
    pool = wait_until(same_commands, 30, "poll commands in /metrics == the Redis statistics")
    cycles_before = int(r.hget(key, "cycles"))
    cycles = value(scrape(svc.pool_url, token), "hpcbridge_poll_cycles_total", hpc="slurm")
    assert cycles_before - 1 <= cycles <= int(r.hget(key, "cycles"))
    assert value(pool, "hpcbridge_ssh_commands_total", hpc="slurm") >= \
        value(pool, "hpcbridge_poll_commands_total", hpc="slurm")  # every command: polls too
    assert value(pool, "hpcbridge_poll_cycle_commands_count", hpc="slurm") == pytest.approx(
        value(pool, "hpcbridge_poll_cycles_total", hpc="slurm"), abs=2)
    return pool


def check_prometheus(prometheus: dict, run: str) -> None:
    """Prometheus scraped both targets (with its bearer token)."""
    wait_until(lambda: len([t for t in prom_query(prometheus, f'up{{run="{run}"}}')
                            if t["value"][1] == "1"]) == 2, 30, "Prometheus scrapes both")
    wait_until(lambda: prom_query(prometheus, f'sum(hpcbridge_job_transitions_total'
                                              f'{{run="{run}",status="succeeded"}})'),
               30, "transitions in Prometheus")
    got = prom_query(prometheus, f'sum(hpcbridge_job_transitions_total{{run="{run}",'
                                 f'status="succeeded"}})')
    assert float(got[0]["value"][1]) == JOBS
    got = prom_query(prometheus, f'hpcbridge_jobs{{run="{run}",hpc="slurm",status="succeeded"}}')
    assert float(got[0]["value"][1]) == JOBS


def check_dashboard(prometheus: dict, scraped: set[str]) -> None:
    """Valid, only metric names a scrape shows, each query accepted by Prometheus."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    for panel in dashboard["panels"]:
        assert {"id", "type", "title", "gridPos"} <= panel.keys(), panel.get("title")
    exprs = dashboard_exprs(dashboard)
    assert len(exprs) >= 12
    used = {m for e in exprs for m in METRIC_NAME.findall(e)}
    assert used and used <= scraped, sorted(used - scraped)
    for expr in exprs:
        prom_query(prometheus, expr.replace("$__rate_interval", "1m")
                   .replace("$hpc", ".*").replace("$__range", "5m"))
