"""Sweeps from the SDK (client.sweep -> Sweep) and the CLI (`hpcbridge sweep`), against a
real middleware and maintainer pool (JupyterHub tokens, the stack's Redis) on the local
HPC, where each element runs as a job of its own: they really run and finish here."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from services import Services, local_hpc

from hpcbridge import Client
from hpcbridge.errors import NotFound, ValidationError

pytestmark = [pytest.mark.stack, pytest.mark.slow]

WAIT = 180
HPCBRIDGE = os.path.join(os.path.dirname(sys.executable), "hpcbridge")


@pytest.fixture(scope="module")
def svc(tmp_path_factory, stack, hub, redis_url):
    tmp = str(tmp_path_factory.mktemp("sweeps-sdk"))
    services = Services(tmp, stack, auth="hub", workers=2,
                        hpcs=[local_hpc(os.path.join(tmp, "data"))])
    services.start()
    yield services
    services.stop()


@pytest.fixture
def client(svc, hub):
    with Client(svc.url, hub.tokens["alice"]) as c:
        yield c


@pytest.fixture
def cli(svc, hub, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HPCBRIDGE_", "JUPYTERHUB_"))}
    env.update(HPCBRIDGE_URL=svc.url, HPCBRIDGE_TOKEN=hub.tokens["alice"])

    def run(*args, code=0):
        result = subprocess.run([HPCBRIDGE, *args], capture_output=True, text=True,
                                timeout=WAIT + 60, cwd=tmp_path, env=env)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == code, (args, result.stdout, result.stderr)
        return result
    return run


def explain(sweep, svc: Services) -> str:
    return "; ".join(f"[{j.sweep_index}] {j.status}: {j.message}" for j in sweep.jobs()) + \
        "\n" + svc.log("maintainer")


def test_a_grid_runs_every_element_with_one_bar_and_results_per_element(client, svc, hub,
                                                                        tmp_path, capsys):
    sweep = client.sweep("hello", grid={"name": ["Ada", "Bo"], "lines": [1, 2]},
                         base={"delay": 0}, throttle=3)
    assert (sweep.size, sweep.throttle, sweep.counts) == (4, 3, {"queued": 4})
    sweep.wait(progress=True, timeout=WAIT)
    assert sweep.counts == {"succeeded": 4}, explain(sweep, svc)
    assert (sweep.done, sweep.finished, sweep.progress) == (True, 4, 1.0)
    bar = capsys.readouterr().err
    assert "4/4" in bar and bar.count("sweep") >= 1 and "0/4" in bar  # one bar, 0 → 4

    jobs = sweep.jobs()
    assert [(j.sweep_index, j.params["name"], j.params["lines"]) for j in jobs] == [
        (0, "Ada", 1), (1, "Ada", 2), (2, "Bo", 1), (3, "Bo", 2)]
    assert "Bo" in jobs[3].logs() and jobs[3].status == "succeeded"
    assert sorted(sweep.results()) == [0, 1, 2, 3]
    folders = sweep.download(str(tmp_path / "out"))
    assert sorted(os.path.basename(f) for f in folders.values()) == ["0", "1", "2", "3"]
    assert all(os.listdir(f) for f in folders.values())
    assert client.get_sweep(sweep.id).counts == {"succeeded": 4}
    assert sweep.id in [s.id for s in client.sweeps()]
    with Client(svc.url, hub.tokens["bob"]) as bob, pytest.raises(NotFound):
        bob.get_sweep(sweep.id)
    with pytest.raises(ValidationError) as info:
        client.sweep("hello", params=[{"lines": 1}, {"lines": 0}])
    assert info.value.details[0]["loc"] == ["params", 1, "lines"]


def test_one_element_cancelled_alone_and_the_rest_with_the_sweep(client, svc):
    sweep = client.sweep("hello", params=[{"lines": 100, "delay": 1}] * 3)
    first = sweep.jobs()[0]
    deadline = time.monotonic() + WAIT
    while first.refresh().status != "running" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert first.status == "running", explain(sweep, svc)
    first.cancel()
    first.wait(progress=False, timeout=WAIT)
    assert first.status == "cancelled"
    assert sweep.refresh().counts.get("cancelled") == 1
    assert sweep.counts.get("succeeded") is None  # the others go on
    sweep.cancel().wait(progress=False, timeout=WAIT)
    assert sweep.counts == {"cancelled": 3}, explain(sweep, svc)


def test_the_cli_runs_a_grid_shows_and_cancels_a_sweep(cli, svc):
    out = json.loads(cli("sweep", "hello", "-p", "lines=1,2", "-p", "delay=0:0.2:0.1",
                         "-p", "name=cli", "--json").stdout)
    assert (out["size"], out["counts"]) == (4, {"succeeded": 4})
    status = cli("sweep", "status", out["id"], "--jobs", "--json").stdout.splitlines()
    assert json.loads(status[0])["id"] == out["id"]
    assert [json.loads(line)["params"]["delay"] for line in status[1:]] == [0.0, 0.1] * 2
    assert out["id"] in cli("sweep", "list").stdout

    long = json.loads(cli("sweep", "hello", "-p", "lines=100", "-p", "delay=1,2",
                          "--no-wait", "--json").stdout)
    cancelled = json.loads(cli("sweep", "cancel", long["id"], "--json").stdout)
    assert cancelled["id"] == long["id"] and cancelled["size"] == 2

    bad = cli("sweep", "hello", "-p", "lines=1,500", code=2)
    assert "grid.lines" in bad.stderr and "500" in bad.stderr


def test_a_sweep_on_slurm_is_one_array_whose_elements_are_jobs(slurm_middleware, hub):
    with Client(slurm_middleware.url, hub.tokens["alice"]) as client:
        sweep = client.sweep("hello", hpc="slurm", grid={"lines": [1, 2, 3]},
                             base={"delay": 0}, throttle=2)
        sweep.wait(progress=False, timeout=WAIT)
        assert sweep.counts == {"succeeded": 3}, explain(sweep, slurm_middleware)
        assert sweep.scheduler_id
        jobs = sweep.jobs()
        assert [j.scheduler_id for j in jobs] == [f"{sweep.scheduler_id}_{i}" for i in range(3)]
        assert [j.logs().count("Hello") for j in jobs] == [1, 2, 3]
        assert sorted(sweep.results()) == [0, 1, 2]

        long = client.sweep("hello", hpc="slurm", params=[{"lines": 100, "delay": 1}] * 2)
        deadline = time.monotonic() + WAIT
        while not long.refresh().counts.get("running") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert long.counts.get("running"), explain(long, slurm_middleware)
        long.cancel().wait(progress=False, timeout=WAIT)
        assert long.counts == {"cancelled": 2}, explain(long, slurm_middleware)
