"""Per-job claims in Redis: at most one worker stages (or finishes) a given job at a time.

The same job can be handed to the pool more than once — the middleware enqueues it when it
is created, the poller when it has room for it, reconciliation when its worker died — and
two workers staging one job would both find nothing under its name and both call `sbatch`.
A claim is a Redis key holding the worker id. A claim whose holder stopped beating its
heart (worker_timeout) is taken over, so a worker killed mid-staging does not strand its
jobs; the key's TTL is only a last resort.

Redis may go away meanwhile: a claim that cannot be taken is not taken (the job is offered
again once Redis is back), a release that fails is harmless (the claim expires or its holder
is found dead), and the claims a worker holds are written again when Redis comes back
empty (`reassert`), so that nobody else starts a job this worker is still staging.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from hpcbridge.taskqueue import TASK_TIMEOUT_SECONDS

from .liveness import alive_workers
from .runtime import REDIS_DOWN

log = logging.getLogger("hpcbridge.maintainer")
CLAIM_TTL_MS = TASK_TIMEOUT_SECONDS * 1000  # as long as an rq task may run

TAKE_OVER = """local v = redis.call('get', KEYS[1])
if (not v) or v == ARGV[1] or v == ARGV[3] then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0"""
RELEASE = """if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1]) end
return 0"""


def claim_key(rt, job_id: str) -> str:
    return rt.key("claim", job_id)


# (worker id, job id) → claim key, of the claims this process holds
_held: dict[tuple[str, str], str] = {}


def take(rt, job_id: str) -> bool:
    """Claim the job for this worker: free, already ours, or held by a dead worker.
    False when Redis cannot be asked (the job is offered again later)."""
    try:
        mine = _take(rt, job_id)
    except REDIS_DOWN as exc:
        log.warning("cannot claim %s (Redis: %s): left for later", job_id, exc)
        return False
    if mine:
        _held[(rt.worker_id, job_id)] = claim_key(rt, job_id)
    return mine


def _take(rt, job_id: str) -> bool:
    key = claim_key(rt, job_id)
    me = rt.worker_id
    if rt.redis.set(key, me, nx=True, px=CLAIM_TTL_MS):
        return True
    holder = rt.redis.get(key)
    if holder is None:  # released meanwhile: try once more
        return bool(rt.redis.set(key, me, nx=True, px=CLAIM_TTL_MS))
    holder = holder.decode()
    if holder != me and holder in alive_workers(rt):
        return False
    script = rt.redis.register_script(TAKE_OVER)
    return bool(script(keys=[key], args=[me, CLAIM_TTL_MS, holder]))


def take_many(rt, job_ids: list[str]) -> list[str]:
    """`take` for a batch: one SET NX per job, pipelined (one round trip); a job refused so
    goes through `take` (held: by a live worker or a dead one). The ids claimed."""
    if not job_ids:
        return []
    me = rt.worker_id
    try:
        pipe = rt.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.set(claim_key(rt, job_id), me, nx=True, px=CLAIM_TTL_MS)
        answers = pipe.execute()
    except REDIS_DOWN as exc:
        log.warning("cannot claim %d jobs (Redis: %s): left for later", len(job_ids), exc)
        return []
    mine = []
    for job_id, got in zip(job_ids, answers):
        if got:
            _held[(me, job_id)] = claim_key(rt, job_id)
            mine.append(job_id)
        elif take(rt, job_id):
            mine.append(job_id)
    return mine


def release_many(rt, job_ids: list[str]) -> None:
    """`release` for a batch, pipelined; never raises."""
    for job_id in job_ids:
        _held.pop((rt.worker_id, job_id), None)
    if not job_ids:
        return
    try:
        script = rt.redis.register_script(RELEASE)
        pipe = rt.redis.pipeline(transaction=False)
        for job_id in job_ids:
            script(keys=[claim_key(rt, job_id)], args=[rt.worker_id], client=pipe)
        pipe.execute()
    except REDIS_DOWN as exc:
        log.info("claims of %d jobs not released (Redis: %s): they pass on by themselves",
                 len(job_ids), exc)


def release(rt, job_id: str) -> None:
    """Give the claim up; never raises (a claim left behind expires or passes on)."""
    _held.pop((rt.worker_id, job_id), None)
    try:
        rt.redis.register_script(RELEASE)(keys=[claim_key(rt, job_id)], args=[rt.worker_id])
    except REDIS_DOWN as exc:
        log.info("claim of %s not released (Redis: %s): it passes on by itself", job_id, exc)


def reassert(rt) -> int:
    """Write again the claims this process holds (after Redis lost its data); how many.
    A claim someone else took meanwhile is left to them, with a warning."""
    count = 0
    for (worker, job_id), key in list(_held.items()):
        if worker != rt.worker_id:
            continue
        if rt.redis.set(key, rt.worker_id, nx=True, px=CLAIM_TTL_MS):
            if (worker, job_id) not in _held:  # released meanwhile (another thread):
                rt.redis.register_script(RELEASE)(keys=[key], args=[rt.worker_id])
                continue  # a claim written back now would outlive its task
            count += 1
        elif (rt.redis.get(key) or b"").decode() != rt.worker_id and \
                (worker, job_id) in _held:
            log.warning("claim of %s was taken by another worker while Redis was away",
                        job_id)
    return count


def held(rt) -> list[str]:
    """Ids of the jobs this worker holds a claim on."""
    return [job_id for worker, job_id in _held if worker == rt.worker_id]


@contextlib.contextmanager
def claimed(rt, job_id: str) -> Iterator[bool]:
    """`with claimed(rt, job_id) as mine:` — mine is False if a live worker has the job."""
    mine = take(rt, job_id)
    try:
        yield mine
    finally:
        if mine:
            release(rt, job_id)
