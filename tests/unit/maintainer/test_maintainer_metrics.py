"""The maintainer's metrics (maintainer/metrics.py): poll cycles as stats.measured records
them, the SSH pool sampler, remote errors, the guarded /metrics server, and the pool's
multiprocess mode with real worker processes adding up (and a dead one's gauges gone)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from services import free_port
from traitlets.config import Config

from hpcbridge.connectors.config import HPCConfig
from hpcbridge.connectors.pool import ConnectorPool
from hpcbridge.maintainer import metrics as M
from hpcbridge.maintainer.stats import count_command, measured


def sample(name: str, **labels) -> float:
    return M.REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_cycle_is_recorded_in_redis_and_observed_alike(runtime):
    before = sample("hpcbridge_poll_cycles_total", hpc="local", result="ok")
    squeue = sample("hpcbridge_poll_commands_total", hpc="local", program="squeue")
    with measured(runtime, "local") as stats:  # the cycle's work: two commands
        count_command(["squeue", "-h"])
        count_command(["sacct"])
        stats["watched"] = 1
    assert sample("hpcbridge_poll_cycles_total", hpc="local", result="ok") == before + 1
    assert sample("hpcbridge_poll_commands_total", hpc="local", program="squeue") == squeue + 1
    totals = runtime.redis.hgetall(runtime.key("stats", "local"))
    assert int(totals[b"commands:squeue"]) == 1 and int(totals[b"cycles"]) == 1

    with pytest.raises(RuntimeError), measured(runtime, "local") as stats:
        raise RuntimeError("a bad cycle")
    assert sample("hpcbridge_poll_cycles_total", hpc="local", result="error") >= 1
    with measured(runtime, "local") as stats:
        stats["unreachable"] = True
    assert sample("hpcbridge_poll_cycles_total", hpc="local", result="unreachable") >= 1
    assert sample("hpcbridge_poll_cycle_commands_count", hpc="local") >= 3


def test_the_sampler_reads_a_pool_and_counts_only_increases():
    pool = ConnectorPool(HPCConfig(id="p1", scheduler="slurm", host="127.0.0.1", port=1,
                                   connections=2, channels_per_connection=4))
    sampler = M.PoolSampler({"p1": type("H", (), {"transport": pool})()})
    sampler.sample()
    assert sample("hpcbridge_ssh_channels", hpc="p1") == 8
    assert sample("hpcbridge_ssh_channels_in_use", hpc="p1") == 0
    assert sample("hpcbridge_ssh_connections", hpc="p1") == 0
    assert sample("hpcbridge_ssh_channel_refusals_total", hpc="p1") == 0  # shown from 0
    pool._slots.get_nowait()  # a channel taken
    pool.channel_refusals = 3
    sampler.sample()
    sampler.sample()
    assert sample("hpcbridge_ssh_channels_in_use", hpc="p1") == 1
    assert sample("hpcbridge_ssh_channel_refusals_total", hpc="p1") == 3
    pool.channel_refusals = 5
    sampler.sample()
    assert sample("hpcbridge_ssh_channel_refusals_total", hpc="p1") == 5
    assert M.pool_usage(object()) is None  # a transport without a pool (local)


def test_remote_errors_by_class_and_reading():
    from hpcbridge.connectors.errors import RemoteTimeout
    before = sample("hpcbridge_remote_errors_total", error="RemoteTimeout", reading="wait")
    M.count_remote_error(RemoteTimeout("slow"), "wait")
    assert sample("hpcbridge_remote_errors_total", error="RemoteTimeout",
                  reading="wait") == before + 1


def test_the_server_serves_only_metrics_and_only_with_the_token():
    registry = CollectorRegistry()
    Counter("hpcbridge_probe", "a probe", registry=registry).inc()
    settings = M.MaintainerMetrics(config=Config({"MaintainerMetrics": {
        "port": free_port(), "token": "s3cret"}}))
    server = M.serve(registry, settings)
    url = f"http://127.0.0.1:{settings.port}"
    try:
        assert httpx.get(f"{url}/metrics", timeout=5).status_code == 401
        r = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer wrong"}, timeout=5)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert httpx.get(f"{url}/other", timeout=5).status_code == 404
        r = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer s3cret"}, timeout=5)
        assert r.status_code == 200 and "hpcbridge_probe_total 1.0" in r.text
    finally:
        server.shutdown()
        server.server_close()


WORKER = textwrap.dedent("""
    import sys
    from hpcbridge.maintainer import metrics as M
    M.WORKERS_UP.set(1)
    M.POLL_COMMANDS.labels("slurm", "squeue").inc(int(sys.argv[1]))
    print("ready", flush=True)
    sys.stdin.readline()  # alive until told
""")


@pytest.mark.timeout(60)
def test_the_pool_adds_up_its_workers_and_forgets_a_dead_ones_gauges(tmp_path):
    settings = {"port": free_port(), "multiproc_dir": str(tmp_path / "mp")}
    os.makedirs(settings["multiproc_dir"])
    (tmp_path / "mp" / "counter_1.db").write_bytes(b"")  # an earlier pool's leftovers
    pool = M.PoolMetrics(Config({"MaintainerMetrics": settings})).start()
    workers = []
    try:
        assert not (tmp_path / "mp" / "counter_1.db").exists()
        assert os.environ[M.MULTIPROC_ENV] == settings["multiproc_dir"]
        for n in (2, 3):
            p = subprocess.Popen([sys.executable, "-c", WORKER, str(n)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
            assert p.stdout.readline().strip() == "ready"
            workers.append(p)
        text = httpx.get(f"http://127.0.0.1:{settings['port']}/metrics", timeout=5).text
        assert 'hpcbridge_poll_commands_total{hpc="slurm",program="squeue"} 5.0' in text
        assert "hpcbridge_maintainer_workers_up 2.0" in text
        workers[0].communicate("\n", timeout=10)
        pool.worker_died(workers[0].pid)
        text = httpx.get(f"http://127.0.0.1:{settings['port']}/metrics", timeout=5).text
        assert 'hpcbridge_poll_commands_total{hpc="slurm",program="squeue"} 5.0' in text
        assert "hpcbridge_maintainer_workers_up 1.0" in text
    finally:
        for p in workers:
            if p.poll() is None:
                p.communicate("\n", timeout=10)
        pool.close()
    assert M.MULTIPROC_ENV not in os.environ


def test_a_lone_worker_serves_its_own_metrics_and_counts_its_transitions(runtime):
    from hpcbridge.maintainer import decisions
    from hpcbridge.server.store import Store
    runtime.site.config.MaintainerMetrics.port = port = free_port()
    hooks, error_hooks = list(Store.transition_hooks), list(getattr(decisions, "ERROR_HOOKS", []))
    server = M.instrument_worker(runtime, None)
    try:
        job = runtime.store.create_job(user="alice", app="x", hpc="local", params={},
                                       resources={})
        before = sample("hpcbridge_job_transitions_total", hpc="local", status="staging")
        assert runtime.store.transition(job.id, "staging", "staging")
        assert sample("hpcbridge_job_transitions_total", hpc="local",
                      status="staging") == before + 1
        runtime.run(runtime.handlers["local"].transport.run(["true"]))
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "hpcbridge_maintainer_workers_up 1.0" in text
        assert 'hpcbridge_ssh_commands_total{hpc="local",program="true"}' in text
    finally:
        Store.transition_hooks[:] = hooks
        if hasattr(decisions, "ERROR_HOOKS"):
            decisions.ERROR_HOOKS[:] = error_hooks
        server.shutdown()
        server.server_close()
