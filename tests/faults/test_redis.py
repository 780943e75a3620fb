"""Redis loses everything while tasks run: FLUSHALL, and a restart without persistence
(killed, a new empty server on the same port ~3 s later). Nothing else is restarted by
hand: the workers must reconnect, re-take their leases and re-enqueue from the store.
Each case has its own redis-server, never the stack's."""
from __future__ import annotations

import time

import pytest
from harness import Fleet, at, check

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(300)]


def busy(seen) -> bool:
    """Tasks in flight: jobs running in Slurm and more waiting to be staged."""
    return seen["running"] >= 3 and seen["queued"] >= 4


def test_redis_flushed_while_tasks_run(faults, stack):
    red = faults.redis()
    svc = faults.start(redis_url=red.url, capacity=12)
    fleet = Fleet(svc, stack)
    fleet.submit(32)
    seen = fleet.until(busy, 90)
    red.client().flushall()
    check("redis-flushall", fleet, 170, at=at(seen))


def test_redis_restarted_empty_while_tasks_run(faults, stack):
    red = faults.redis()
    svc = faults.start(redis_url=red.url, capacity=12)
    fleet = Fleet(svc, stack)
    fleet.submit(32)
    seen = fleet.until(busy, 90)
    red.kill()
    time.sleep(3)
    red.start()  # the same port, no data
    check("redis-restart-empty", fleet, 170, at=at(seen),
          maintainer_alive=int(svc.procs["maintainer"].poll() is None))
