"""A job's own files against the maintainer, on the real stack (Slurm behind sshd, Redis,
JupyterHub): a log swapped for a named pipe or made unreadable while the job runs, a
result store this machine cannot write, and results that hold a link out and a folder
nobody may read. Each case: no job stuck, no other job held up, results never lost.
Fixtures: conftest.py; helpers: maintainer_support.py. Measured lines: docs/reliability.md."""
from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import time

import pytest
import redis
from maintainer_support import add_app, cycle_stats, event_types, remote, submit, token

from hpcbridge.server.store import Store

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(600)]

# runs ~20 s, writing to stdout.log as it goes; leaves a result
TICKER = ("for i in $(seq 1 20); do echo tick $i; sleep 1; done\n"
          "echo done > result/r.txt")


def store_of(svc) -> Store:
    return Store(svc.db_url, create=False)


def wait_for(predicate, timeout: float, what: str, step: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def running_with_log(svc, http, job_id: str) -> str:
    """Wait until the job runs and its stdout.log has bytes; its remote work dir."""
    def ready():
        job = http.get(f"jobs/{job_id}").json()
        if job["status"] == "running" and job.get("stdout_size", 0) > 0:
            return store_of(svc).get_job(job_id).remote_dir
        if job["status"] == "running":  # the size is the maintainer's cursor: read the store
            row = store_of(svc).get_job(job_id)
            return row.remote_dir if row.stdout_size > 0 else None
        return None
    return wait_for(ready, 120, f"{job_id} running with a log")


def cycle_seconds(svc, hpc: str, since: float) -> list[float]:
    red = redis.Redis.from_url(svc.stack["redis_url"])
    _, cycles = cycle_stats(svc, red, hpc)
    return [c["seconds"] for c in cycles if c["t"] >= since]


def test_a_log_swapped_for_a_pipe_stops_no_polling_and_the_job_keeps_its_results(
        slurm_services, stack, tmp_path):
    svc = slurm_services(capacity=10)
    app = add_app(svc, stack, tmp_path, "ticker", TICKER)
    http = svc.client(token(stack, "alice"))
    victim = submit(http, app)
    workdir = running_with_log(svc, http, victim)
    swapped = time.time()
    remote(stack, f"cd {workdir} && rm stdout.log && mkfifo stdout.log")
    others = [submit(http, "hello", lines=1, delay=0) for _ in range(5)]
    for job_id in others:  # polling goes on: they run and end meanwhile
        assert svc.wait_job(http, job_id, timeout=120)["status"] == "succeeded"
    job = svc.wait_job(http, victim, timeout=180)
    assert job["status"] == "succeeded", job
    got = http.get(f"jobs/{victim}/results/result/r.txt")
    assert got.status_code == 200 and got.text == "done\n"
    types = event_types(http, victim)
    assert types.count("log_unreadable") == 1, types
    seconds = cycle_seconds(svc, "slurm", swapped)
    assert seconds and max(seconds) < 5, seconds  # no cycle hung on the pipe
    print(f"\nMEASURED pipe: {len(seconds)} cycles after the swap, median "
          f"{statistics.median(seconds):.3f} s, max {max(seconds):.3f} s; "
          f"others ended, victim {job['status']}")


def test_an_unreadable_log_does_not_keep_the_job_finishing(slurm_services, stack, tmp_path):
    svc = slurm_services(capacity=4)
    app = add_app(svc, stack, tmp_path, "ticker", TICKER)
    http = svc.client(token(stack, "alice"))
    victim = submit(http, app)
    workdir = running_with_log(svc, http, victim)
    remote(stack, f"chmod 000 {workdir}/stdout.log")
    other = submit(http, "hello", lines=1, delay=0)
    assert svc.wait_job(http, other, timeout=120)["status"] == "succeeded"
    started = time.monotonic()
    job = svc.wait_job(http, victim, timeout=180)
    assert job["status"] == "succeeded", job
    assert http.get(f"jobs/{victim}/results/result/r.txt").text == "done\n"
    assert event_types(http, victim).count("log_unreadable") == 1
    print(f"\nMEASURED chmod 000 log: ended {job['status']} {time.monotonic() - started:.1f} s "
          "after the other job")


@contextlib.contextmanager
def immutable(folder: str):
    """This machine's result store refusing every write (root ignores modes: chattr +i)."""
    os.makedirs(folder, exist_ok=True)
    subprocess.run(["chattr", "+i", folder], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", folder], check=True)


def remote_exists(stack, path: str) -> bool:
    return remote(stack, f"test -d {path} && echo yes || echo no").strip() == "yes"


def test_a_result_store_that_cannot_be_written_keeps_the_job_until_it_can(
        slurm_services, stack, tmp_path):
    svc = slurm_services(capacity=4, cleanup="on_success")
    app = add_app(svc, stack, tmp_path, "writes", "echo 12345 > result/r.txt")
    http = svc.client(token(stack, "alice"))
    results = os.path.join(svc.data_dir, "results")
    with immutable(results):
        job_id = submit(http, app)
        wait_for(lambda: "results_waiting" in event_types(http, job_id), 120,
                 "a results_waiting event")
        job = http.get(f"jobs/{job_id}").json()
        assert job["status"] == "finishing", job
        workdir = store_of(svc).get_job(job_id).remote_dir
        assert remote_exists(stack, workdir)  # the only copy stays on the HPC
        time.sleep(5)
        assert http.get(f"jobs/{job_id}").json()["status"] == "finishing"
        assert remote_exists(stack, workdir)
    freed = time.monotonic()
    job = svc.wait_job(http, job_id, timeout=180)
    assert job["status"] == "succeeded", job
    assert http.get(f"jobs/{job_id}/results/result/r.txt").text == "12345\n"
    assert not remote_exists(stack, workdir)  # removed after the verified collection
    waits = event_types(http, job_id).count("results_waiting")
    print(f"\nMEASURED result store read-only: {waits} results_waiting events; succeeded "
          f"{time.monotonic() - freed:.1f} s after it was writable again")


def test_results_with_a_link_out_and_an_unreadable_folder_end_with_a_clear_message(
        slurm_services, stack, tmp_path):
    svc = slurm_services(capacity=4, cleanup="always")
    command = ("echo ok > result/ok.txt; ln -s /etc/passwd result/passwd; "
               "mkdir result/secret; echo x > result/secret/f; chmod 000 result/secret")
    app = add_app(svc, stack, tmp_path, "hostile", command)
    http = svc.client(token(stack, "alice"))
    job_id = submit(http, app)
    started = time.monotonic()
    job = svc.wait_job(http, job_id, timeout=180)
    workdir = store_of(svc).get_job(job_id).remote_dir
    try:
        assert job["status"] == "failed", job
        assert job["message"].startswith("the job ended but its results could not be "
                                         "collected: "), job["message"]
        assert "permission denied" in job["message"]
        assert remote_exists(stack, workdir)  # kept: the collection was not complete
        assert http.get(f"jobs/{job_id}/results/result/passwd").status_code == 404
    finally:
        remote(stack, f"chmod -R u+rwx {workdir}/result || true")
    print(f"\nMEASURED link out + mode-000 folder: {job['status']} in "
          f"{time.monotonic() - started:.1f} s: {job['message']}")
