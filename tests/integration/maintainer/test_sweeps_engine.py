"""The sweep engine end to end (issue #24): on Slurm a sweep is one job array whose
elements behave as jobs (own status, logs, results, cancel); on the local handler the same
without arrays. A crash between sbatch and its record submits nothing twice.
Fixtures: conftest.py; helpers: maintainer_support.py."""
from __future__ import annotations

import time
from collections import Counter

import pytest
from maintainer_support import event_types, remote, sacct_by_name, token
from traitlets.config import PyFileConfigLoader

from hpcbridge.config import Site

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(400)]
WAIT = 240


def post_sweep(http, hpc: str, points: list[dict], **extra) -> dict:
    r = http.post("sweeps", json={"app": "hello", "hpc": hpc, "params": points, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def elements(http, sweep_id: str) -> list[dict]:
    r = http.get(f"sweeps/{sweep_id}/jobs", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return sorted(r.json()["jobs"], key=lambda j: j["sweep_index"])


def wait_for(http, sweep_id: str, svc, test, what: str, timeout: float = WAIT) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = elements(http, sweep_id)
        if test(jobs):
            return jobs
        time.sleep(0.3)
    raise AssertionError(f"{what}: {Counter(j['status'] for j in jobs)} "
                         f"{[j['message'] for j in jobs]}\n{svc.log('maintainer')[-3000:]}")


def ended(jobs) -> bool:
    return all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs)


def check_own_output(http, job: dict, name: str) -> None:
    """An element succeeded with its own result and its own log."""
    assert job["status"] == "succeeded" and job["exit_code"] == 0, job
    got = http.get(f"jobs/{job['id']}/results/result/greeting.txt")
    assert got.status_code == 200 and got.text == f"Hello, {name}!\n", got.text
    log = http.get(f"jobs/{job['id']}/logs").json()
    assert f"Hello, {name}!" in log["data"] and log["complete"], log
    assert event_types(http, job["id"]).count("submitted") == 1


def run_scenario(svc, http, hpc: str) -> tuple[list[dict], list[dict]]:
    """Two sweeps: one whose short elements succeed but for one long element cancelled
    alone, and one of long elements cancelled as a whole. (first's, second's elements)."""
    points = [{"name": f"p{i}", "lines": 1, "delay": 0} for i in range(5)]
    points.append({"name": "long", "lines": 60, "delay": 1})
    first = post_sweep(http, hpc, points)
    second = post_sweep(http, hpc, [{"name": f"q{i}", "lines": 60, "delay": 1}
                                    for i in range(3)])
    jobs = wait_for(http, first["id"], svc, lambda js: js[5]["status"] == "running",
                    "the long element never ran")
    assert http.post(f"jobs/{jobs[5]['id']}/cancel").status_code == 202
    wait_for(http, second["id"], svc, lambda js: all(j["scheduler_id"] for j in js),
             "the second sweep never reached the scheduler")
    assert http.post(f"sweeps/{second['id']}/cancel").status_code == 202
    done = wait_for(http, first["id"], svc, ended, "the first sweep never ended")
    for job, point in zip(done[:5], points):
        check_own_output(http, job, point["name"])
    assert done[5]["status"] == "cancelled", done[5]
    cancelled = wait_for(http, second["id"], svc, ended, "the second sweep never ended")
    assert [j["status"] for j in cancelled] == ["cancelled"] * 3, cancelled
    return done, cancelled


def test_a_sweep_is_one_array_on_slurm(slurm_services, stack):
    svc = slurm_services(capacity=50)
    http = svc.client(token(stack, "alice"))
    first, second = run_scenario(svc, http, "slurm")
    for jobs in (first, second):
        arrays = {j["scheduler_id"].split("_")[0] for j in jobs}
        assert len(arrays) == 1, jobs  # one sbatch --array per sweep
        array = arrays.pop()
        assert [j["scheduler_id"] for j in jobs] == [f"{array}_{j['sweep_index']}"
                                                     for j in jobs]
    # nothing of the sweeps is left in Slurm's queue
    assert not any(first[0]["scheduler_id"].split("_")[0] in line
                   for line in remote(stack, "squeue -h -r -o %i").split())


def test_a_sweep_on_the_local_handler_is_jobs_of_their_own(local_services):
    svc = local_services(capacity=8)
    http = svc.client("t-alice")
    first, _ = run_scenario(svc, http, "local")
    assert len({j["scheduler_id"] for j in first}) == len(first)  # a process each


class Crash(BaseException):
    """A worker dying right after sbatch answered (no `except Exception` catches it)."""


def test_a_crash_between_sbatch_and_its_record_submits_nothing_twice(slurm_services, stack):
    from hpcbridge.maintainer.runtime import Runtime
    from hpcbridge.maintainer.tasks import drive

    start = time.time()
    svc = slurm_services(capacity=50, maintainer=False)
    http = svc.client(token(stack, "alice"))
    sweep = post_sweep(http, "slurm", [{"name": f"c{i}", "lines": 1, "delay": 0}
                                       for i in range(3)])
    rt = Runtime(Site(config=PyFileConfigLoader(svc.config_file).load_config()),
                 worker_id="crashing-worker")
    record = rt.store.update_sweep

    def dies_after_sbatch(sweep_id, **fields):
        if "scheduler_id" in fields:
            raise Crash()
        return record(sweep_id, **fields)
    rt.store.update_sweep = dies_after_sbatch
    try:
        with pytest.raises(Crash):
            drive(rt, elements(http, sweep["id"])[0]["id"])
    finally:
        rt.close()
    assert {j["status"] for j in elements(http, sweep["id"])} == {"staging"}
    svc.start_maintainer()  # finds the array by the sweep's name, submits nothing
    jobs = wait_for(http, sweep["id"], svc, ended, "the sweep never ended")
    for i, job in enumerate(jobs):
        check_own_output(http, job, f"c{i}")
    # one array of three elements in Slurm's accounting, not two arrays
    states = sacct_by_name(stack, start)[f"hpcbridge-{sweep['id']}"]
    assert states == ["COMPLETED"] * 3, states
