"""The scheduler's faults, on the stack's one shared slurmctld (it cannot be private): run
only with HPCBRIDGE_FAULTS_SLURMCTLD=1, after every other case, and slurmctld is always
brought back (`stack/up.sh slurmctld`) in a finally block.

- stopped (SIGTERM) for 45 s while jobs are pending, running and being submitted;
- killed hard (SIGKILL) right after a burst of submissions, so that it forgets its newest
  jobs and hands their ids out again after the restart."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time

import pytest
from harness import Fleet, at, check

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.slurmctld,
              pytest.mark.timeout(300)]
IN_SLURM = ("submitted", "running", "finishing", "succeeded")


def alive(pid: int) -> bool:
    """PID 1 reaps slowly here: a dead daemon stays a zombie for seconds."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:\tZ") for line in f)
    except FileNotFoundError:
        return False


def start_slurmctld(stack: dict) -> None:
    subprocess.run(["bash", os.path.join(stack["repo"], "stack", "up.sh"), "slurmctld"],
                   check=True, timeout=60, capture_output=True)


def resume_duplicate_drained() -> int:
    """Resume the nodes Slurm drained with "Duplicate jobid" (as the site's admin would):
    after a hard kill, an id handed out again can reach a node where the forgotten job of
    that id still runs; slurmd refuses it and the controller drains the node for good,
    which would stall every later job on the stack. How many were resumed."""
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N|%E"], capture_output=True,
                         text=True, timeout=30).stdout
    nodes = [n for n, _, why in (ln.partition("|") for ln in out.splitlines())
             if "duplicate jobid" in why.lower()]
    for node in nodes:
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"],
                       capture_output=True, timeout=30)
    return len(nodes)


def release_launch_failed() -> int:
    """Release the jobs Slurm held as "launch failed requeued held" (as the site's admin
    would): a job that ended just before the kill comes back from the saved state as
    pending, its second launch fails, and Slurm holds it for good. How many."""
    out = subprocess.run(["squeue", "-h", "-t", "PENDING", "-o", "%i|%r"],
                         capture_output=True, text=True, timeout=30).stdout
    ids = [i for i, _, why in (ln.partition("|") for ln in out.splitlines())
           if "launch failed requeued held" in why.lower()]
    if ids:
        subprocess.run(["scontrol", "release", *ids], capture_output=True, timeout=30)
    return len(ids)


def admin_fixes() -> int:
    """What the site's admin does after a controller crash; how many things were fixed."""
    return resume_duplicate_drained() + release_launch_failed()


class Fixes(list):
    """What admin_on_call fixed; prints as its count when the summary line is written (at
    the end of the case, not when check() is called)."""

    def __str__(self) -> str:
        return str(len(self))


@contextlib.contextmanager
def admin_on_call():
    """For the body of the with (and once after it), admin_fixes every second; yields a
    list whose length is how many nodes were resumed and held jobs released."""
    resumed = Fixes()
    stop = threading.Event()

    def watch():
        while not stop.wait(1.0):
            with contextlib.suppress(Exception):  # sinfo while the controller restarts
                resumed.extend([1] * admin_fixes())
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield resumed
    finally:
        stop.set()
        thread.join(40)
        with contextlib.suppress(Exception):
            resumed.extend([1] * admin_fixes())


@contextlib.contextmanager
def slurmctld_down(stack: dict, sig: int):
    """slurmctld stopped with `sig` for the body of the with, always restarted after."""
    with open(os.path.join(stack["stack_dir"], "slurm", "slurmctld.pid")) as f:
        pid = int(f.read().strip())
    try:
        os.kill(pid, sig)
        deadline = time.monotonic() + 20
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(pid), "slurmctld did not stop"
        yield
    finally:
        start_slurmctld(stack)


def test_slurmctld_stopped_for_45_seconds(faults, stack):
    svc = faults.start(capacity=40)
    fleet = Fleet(svc, stack, long_cpus=2)  # 2-CPU long jobs: some must pend in Slurm
    fleet.submit(20)
    seen = fleet.until(lambda s: s["running"] >= 3 and s["submitted"] >= 1, 60)
    with slurmctld_down(stack, signal.SIGTERM):
        down = time.monotonic()
        fleet.submit(6, first=20)  # submitted while the controller is away
        time.sleep(15)
        fleet.submit(6, first=26)
        time.sleep(max(0.0, 45 - (time.monotonic() - down)))
    check("slurmctld-stopped-45s", fleet, 170, at=at(seen))


@pytest.mark.timeout(330)  # 60 s to the kill, 170 s to the end, 60 s for accounting
def test_slurmctld_killed_hard_forgets_its_newest_jobs(faults, stack):
    # a job whose id only accounting still remembers (its end never recorded: the controller
    # died) is declared lost after 2 x lost_after: short enough to end within the case
    svc = faults.start(capacity=40, extra_config="c.Maintainer.lost_after_seconds = 30.0")
    fleet = Fleet(svc, stack)
    with admin_on_call() as resumed:
        fleet.submit(32)  # a burst: kill as soon as most of it reached sbatch
        seen = fleet.until(lambda s: sum(s[k] for k in IN_SLURM) >= 20, 60)
        with slurmctld_down(stack, signal.SIGKILL):
            time.sleep(3)
        # a second burst right after the restart: these get the ids slurmctld hands out
        # again (the forgotten jobs'), so accounting answers an older row under their id
        fleet.submit(8, first=32)
        check("slurmctld-kill9", fleet, 170, scheduler_may_lose=True, at=at(seen),
              admin_fixes=resumed)
