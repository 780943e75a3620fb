"""Prometheus' own graph page (the stack's Debian Prometheus, its classic UI) showing an
hpcbridge metric from a real run: a middleware and a pool of two maintainer workers on the
local HPC, scraped through a targets file. The screenshot goes to
docs/screenshots/prometheus.png (Grafana is not packaged in Debian: the README shows this)."""
from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect
from services import Services, free_port, local_hpc

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(300)]

TOKENS = {"t-alice": "alice", "t-admin": "admin"}
JOBS = 6


@pytest.fixture
def metered(tmp_path, stack):
    """Services on the local HPC with both /metrics as targets of the stack's Prometheus."""
    prom = stack.get("prometheus")
    if not prom:
        pytest.skip("the stack has no Prometheus (bash stack/up.sh prometheus)")
    token = Path(prom["token_file"]).read_text().strip()
    svc = Services(str(tmp_path / "svc"), stack, auth="static", static_tokens=TOKENS,
                   workers=2)
    svc.hpcs = [local_hpc(svc.data_dir, capacity=2, poll_interval=0.5)]
    pool_port = free_port()
    svc.extra_config = (f"c.Metrics.token = {token!r}\n"
                        f"c.MaintainerMetrics.port = {pool_port}\n"
                        f"c.MaintainerMetrics.token = {token!r}\n")
    targets = Path(prom["targets_dir"]) / f"browser-{svc.run_id}.json"
    targets.write_text(json.dumps([{"targets": [f"127.0.0.1:{svc.port}",
                                                f"127.0.0.1:{pool_port}"],
                                    "labels": {"run": svc.run_id}}]))
    svc.start()
    try:
        yield svc, prom
    finally:
        targets.unlink(missing_ok=True)
        svc.stop()


def series(prom: dict, query: str) -> list:
    r = httpx.get(f"{prom['url']}/api/v1/query", params={"query": query}, timeout=10)
    return r.json()["data"]["result"]


def test_prometheus_graphs_jobs_by_status(metered, chromium, shoot):
    svc, prom = metered
    alice = svc.client("t-alice")
    expr = f'sum by (status) (hpcbridge_jobs{{run="{svc.run_id}"}})'
    started = time.monotonic()
    # a few scrapes of an empty run first, then jobs in two waves: the lines move
    deadline = time.monotonic() + 30
    while not series(prom, expr) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert series(prom, expr), "Prometheus has not scraped the middleware"
    ids = []
    for wave in range(2):
        for i in range(JOBS // 2):
            r = alice.post("jobs", json={"app": "hello", "hpc": "local", "params": {
                "name": f"w{wave}-{i}", "lines": 4, "delay": 1.5}})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        time.sleep(4)
    for job_id in ids:
        assert svc.wait_job(alice, job_id, timeout=120)["status"] == "succeeded"
    succeeded = f'sum(hpcbridge_jobs{{run="{svc.run_id}",status="succeeded"}})'
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = series(prom, succeeded)
        if got and float(got[0]["value"][1]) == JOBS:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"Prometheus never saw {JOBS} succeeded jobs")
    time.sleep(3)  # a few more points after the end

    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    shown = f"{int(time.monotonic() - started) + 5}s"  # the run, edge to edge
    params = {"g0.expr": expr, "g0.tab": "0", "g0.range_input": shown}
    page.goto(f"{prom['url']}/classic/graph?{urllib.parse.urlencode(params)}")
    page.wait_for_selector(".graph_area svg path", state="attached", timeout=20_000)
    legend = page.locator(".legend")
    expect(legend.first).to_contain_text("succeeded", timeout=10_000)
    expect(legend.first).to_contain_text("queued")
    shoot(page, "prometheus.png")
