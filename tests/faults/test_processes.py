"""Faults of hpcbridge's own processes: every maintainer process killed with SIGKILL while
jobs are being submitted (then a restart), and the middleware killed while a client submits
in a loop (then a restart). The stack's Redis and sshd are not touched."""
from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import httpx
import pytest
from harness import Fleet, at, check, gone, kill_tree, unique_key

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(300)]


def kill_maintainer(svc) -> None:
    """kill -9 of the pool process and every worker it started, wherever their group."""
    proc = svc.procs["maintainer"]
    kill_tree(proc.pid, signal.SIGKILL)
    svc.stop("maintainer", signal.SIGKILL)
    gone(proc)


def test_every_maintainer_process_killed_mid_submission(faults, stack):
    svc = faults.start(capacity=12)
    fleet = Fleet(svc, stack)
    fleet.submit(24)
    # mid-submission: some jobs staging or just sbatched, others still queued
    seen = fleet.until(lambda s: s["staging"] >= 1 and s["queued"] >= 4, 60)
    kill_maintainer(svc)
    fleet.submit(8, first=24)  # the client goes on while no maintainer runs
    time.sleep(3)
    svc.start_maintainer()
    check("maintainer-kill9", fleet, 170, at=at(seen))


def submit_in_a_loop(fleet: Fleet, want: int, stop: threading.Event, tries: Counter) -> None:
    """A client that submits until `want` jobs are acknowledged; a cut request is retried
    with the same idempotency key, as a careful client would."""
    i = 0
    while len(fleet.jobs) < want and not stop.is_set():
        key = unique_key()
        while not stop.is_set():
            tries["posts"] += 1
            try:
                fleet.post(i, key=key, timeout=5)
                break
            except (httpx.HTTPError, AssertionError):
                tries["cut"] += 1
                time.sleep(0.2)
        i += 1


def test_middleware_killed_while_a_client_submits(faults, stack):
    svc = faults.start(capacity=40)
    fleet = Fleet(svc, stack)
    stop, tries = threading.Event(), Counter()
    client = threading.Thread(target=submit_in_a_loop, args=(fleet, 34, stop, tries),
                              daemon=True)
    client.start()
    try:
        deadline = time.monotonic() + 60
        while len(fleet.jobs) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        svc.stop("server", signal.SIGKILL)
        time.sleep(2)
        svc._spawn("server", "server")
        svc.wait_health()
        client.join(120)
    finally:
        stop.set()
    admin = svc.client(stack["hub"]["tokens"]["admin"])
    listed = {j["id"] for j in admin.get("admin/jobs", params={"limit": 1000}).json()["jobs"]}
    # jobs the store holds that no 201 told the client about (a cut answer, no idempotency)
    check("middleware-kill9", fleet, 170, posts=tries["posts"], cut=tries["cut"],
          unacknowledged=len(listed - set(fleet.jobs)))
