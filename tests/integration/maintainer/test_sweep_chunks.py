"""A sweep larger than the site's MaxArraySize on the stack's Slurm (issue #24): sent as
several arrays of max_array_size - 1 elements by one command, each element still a job of
its own (status, logs, results, cancel), the sweep's cancel reaching every array, and a
crash in the middle sending only the arrays Slurm does not have.
The stack's Slurm allows large arrays: HPCConfig.max_array_size stands in for a site's
MaxArraySize. Fixtures: conftest.py; helpers: maintainer_support.py, test_sweeps_engine.py."""
from __future__ import annotations

import time

import pytest
from maintainer_support import remote, sacct_by_name, token
from test_sweeps_engine import check_own_output, elements, ended, post_sweep, wait_for
from traitlets.config import PyFileConfigLoader

from hpcbridge.config import Site
from hpcbridge.connectors.spec import chunk_name

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(400)]
SIZE = 5  # a MaxArraySize of 5: arrays of 4 elements, 10 elements in 3 arrays
ARRAYS = {0: (0, 4), 4: (4, 8), 8: (8, 10)}  # offset → its elements' indices [from, to)


def names(sweep_id: str) -> list[str]:
    return [chunk_name(sweep_id, offset) for offset in ARRAYS]


def scancel_ours(stack, sweep_id: str) -> None:
    """Nothing of this test's arrays left running, whatever failed (never others' jobs)."""
    for name in names(sweep_id):
        remote(stack, f"scancel --name={name}")


def check_arrays(sweep: dict, jobs: list[dict]) -> None:
    """Every element is `<its array's id>_<index - offset>`, one array per offset, and the
    sweep lists the arrays."""
    arrays = {}
    for offset, (first, end) in ARRAYS.items():
        ids = {j["scheduler_id"].split("_")[0] for j in jobs[first:end]}
        assert len(ids) == 1, jobs[first:end]
        arrays[offset] = ids.pop()
        assert [j["scheduler_id"] for j in jobs[first:end]] == [
            f"{arrays[offset]}_{i - offset}" for i in range(first, end)]
    assert len(set(arrays.values())) == 3
    assert sorted(sweep["scheduler_id"].split(",")) == sorted(arrays.values()), sweep


def test_a_sweep_larger_than_max_array_size_is_several_arrays(slurm_services, stack):
    start = time.time()
    svc = slurm_services(capacity=50, max_array_size=SIZE)
    http = svc.client(token(stack, "alice"))
    long = {3, 5, 8}  # one in each array: 5 cancelled alone, 3 and 8 with the sweep
    points = [{"name": f"p{i}", "lines": 60 if i in long else 1, "delay": int(i in long)}
              for i in range(10)]
    sweep = post_sweep(http, "slurm", points)
    try:
        jobs = wait_for(http, sweep["id"], svc,
                        lambda js: js[5]["status"] == "running" and all(
                            j["status"] == "succeeded" for j in js if j["sweep_index"] not in long),
                        "the short elements never succeeded")
        for job, point in zip(jobs, points):
            if job["sweep_index"] not in long:
                check_own_output(http, job, point["name"])
        check_arrays(http.get(f"sweeps/{sweep['id']}").json(), jobs)
        assert http.post(f"jobs/{jobs[5]['id']}/cancel").status_code == 202
        jobs = wait_for(http, sweep["id"], svc, lambda js: js[5]["status"] == "cancelled",
                        "the one element was never cancelled")
        assert [jobs[i]["status"] for i in (3, 8)] == ["running", "running"], jobs
        assert http.post(f"sweeps/{sweep['id']}/cancel").status_code == 202
        jobs = wait_for(http, sweep["id"], svc, ended, "the sweep never ended")
        assert [jobs[i]["status"] for i in sorted(long)] == ["cancelled"] * 3, jobs
        # Slurm ran exactly three arrays and ended every task of the long ones as cancelled
        seen = {}
        deadline = time.monotonic() + 60  # accounting lags the controller by seconds
        while time.monotonic() < deadline:
            seen = {n: s for n, s in sacct_by_name(stack, start).items()
                    if n in names(sweep["id"])}
            states = [s for n in seen for s in seen[n]]
            if len(states) == 10 and not any(s.startswith(("RUNNING", "PENDING"))
                                             for s in states):
                break
            time.sleep(2)
        assert sorted(len(s) for s in seen.values()) == [2, 4, 4], seen
        assert sum(s.startswith("CANCELLED") for n in seen for s in seen[n]) == 3, seen
        queued = remote(stack, "squeue -h -r -o %j").split()
        assert not set(names(sweep["id"])) & set(queued)
    finally:
        scancel_ours(stack, sweep["id"])


class Crash(BaseException):
    """A worker dying in the middle of its sbatch command (no `except Exception`)."""


def test_a_crash_after_some_arrays_sends_only_the_missing_ones(slurm_services, stack):
    from hpcbridge.maintainer.runtime import Runtime
    from hpcbridge.maintainer.tasks import drive

    start = time.time()
    svc = slurm_services(capacity=50, maintainer=False, max_array_size=SIZE)
    http = svc.client(token(stack, "alice"))
    sweep = post_sweep(http, "slurm", [{"name": f"c{i}", "lines": 1, "delay": 0}
                                       for i in range(10)])
    try:
        rt = Runtime(Site(config=PyFileConfigLoader(svc.config_file).load_config()),
                     worker_id="crashing-worker")
        handler = rt.handlers["slurm"]
        submit = handler.submit_arrays
        sent: list[list] = []

        async def two_then_crash(arrays):
            sent.append(await submit(arrays[:2]))  # the first two reach Slurm
            raise Crash()
        handler.submit_arrays = two_then_crash
        try:
            with pytest.raises(Crash):
                drive(rt, elements(http, sweep["id"])[0]["id"])
        finally:
            rt.close()
        assert len(sent) == 1 and all(str(i).isdigit() for i in sent[0]), sent
        assert {j["status"] for j in elements(http, sweep["id"])} == {"staging"}
        svc.start_maintainer()  # finds two arrays by their names, sends the third only
        jobs = wait_for(http, sweep["id"], svc, ended, "the sweep never ended")
        for i, job in enumerate(jobs):
            check_own_output(http, job, f"c{i}")
        check_arrays(http.get(f"sweeps/{sweep['id']}").json(), jobs)
        assert {j["scheduler_id"].split("_")[0] for j in jobs[:8]} == set(sent[0])
        # three arrays in Slurm's accounting, each once: none sent twice
        deadline, states = time.monotonic() + 60, {}
        while time.monotonic() < deadline:
            states = sacct_by_name(stack, start)
            if sum(len(states.get(n, [])) for n in names(sweep["id"])) >= 10:
                break
            time.sleep(2)
        assert [sorted(states.get(n, [])) for n in names(sweep["id"])] == \
            [["COMPLETED"] * 4, ["COMPLETED"] * 4, ["COMPLETED"] * 2], states
    finally:
        scancel_ours(stack, sweep["id"])
