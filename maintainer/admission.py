"""Admission: which queued jobs an HPC has room for, and in what order (fair across users).

The poller works out who is next from the jobs its cycle already read and offers them to
the pool; the task decides again under the HPC's admission lock (`admit`), so a stale
guess by the poller costs nothing and two workers never overfill an HPC.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence

from redis.exceptions import LockError

from hpcbridge.lifecycle import JobStatus

from .runtime import REDIS_DOWN

log = logging.getLogger("hpcbridge.maintainer")

def fair_pick(queued: Sequence, in_scheduler: Iterable, n: int,
              load: Counter | None = None) -> list:
    """Up to n of the `queued` jobs (oldest first), in the order they should be admitted.

    Each pick goes to the user with the fewest jobs in the scheduler, counting the ones
    picked before it; ties go to the user whose oldest queued job has waited longest. A
    user who queued many jobs first cannot keep the others out when the slots free up
    one at a time: the slot goes to whoever holds fewest.
    """
    if n <= 0 or not queued:
        return []
    # `load`: the jobs in the scheduler per user, when counted instead of listed
    load = Counter(load) if load is not None else Counter(job.user for job in in_scheduler)
    lines: dict[str, list] = {}
    for job in queued:
        lines.setdefault(job.user, []).append(job)
    rank = {job.id: i for i, job in enumerate(queued)}
    heads = {user: 0 for user in lines}
    picked = []
    while len(picked) < n and heads:
        user = min(heads, key=lambda u: (load[u], rank[lines[u][heads[u]].id]))
        picked.append(lines[user][heads[user]])
        load[user] += 1
        heads[user] += 1
        if heads[user] == len(lines[user]):
            del heads[user]
    return picked


def next_to_admit(hpc, queued: Sequence, in_scheduler: Sequence, most: int | None = None
                  ) -> list:
    """The queued jobs (oldest first) the HPC has room for now, in fair order (the first
    `most` of them only, if given)."""
    room = hpc.capacity - len(in_scheduler)
    return fair_pick(queued, in_scheduler, room if most is None else min(room, most))


def admit(rt, job) -> bool:
    """queued → staging if the HPC has room, is not drained, was not found unreachable by
    its poller, and the job is next in order. An HPC known to be down is not tried here:
    a hung login node would hold this worker for a whole connect budget, slowing every
    other HPC's jobs; the poller probes it and offers its jobs again once it answers."""
    return job.id in admit_batch(rt, job, 1, [job.id])[0]


def admit_batch(rt, job, size: int, only: list[str] | None = None
                ) -> tuple[list[str], bool]:
    """Up to `size` queued jobs of `job`'s HPC moved to staging together (one
    transaction), in fair order, as `admit` decides for one: (the ids moved, whether more
    queued jobs had room beyond `size`). `only`: only these of the jobs the HPC has room
    for (one job's admission). Elements of a sweep on an HPC of job arrays are admitted
    with their sweep instead."""
    if not _open_for(rt, job):
        return [], False
    return _admit(rt, job.hpc, size, only)


def admit_next(rt, hpc_id: str, size: int) -> tuple[list[str], bool]:
    """admit_batch for an HPC rather than a job (a wake): every queued job of a down HPC
    is told why it waits."""
    if not _open(rt, hpc_id, lambda why: _tell_queued(rt, hpc_id, why)):
        return [], False
    return _admit(rt, hpc_id, size, None)


def _admit(rt, hpc_id: str, size: int, only: list[str] | None) -> tuple[list[str], bool]:
    wait = rt.tuning.admission_lock_seconds
    arrays = getattr(rt.handlers[hpc_id], "supports_arrays", False)
    try:
        with rt.redis.lock(rt.key("admit", hpc_id), timeout=wait, blocking_timeout=wait):
            load, queued = rt.store.admission_view(hpc_id)  # counts and ids: cheap
            queued = [j for j in queued if not (arrays and j.sweep_id)]
            room = rt.hpcs[hpc_id].capacity - sum(load.values())
            # one more than asked for: is there more to do after this batch?
            picked = fair_pick(queued, (), room if only is not None else min(room, size + 1),
                               load)
            if only is not None:
                picked = [j for j in picked if j.id in only]
            more, picked = len(picked) > size, picked[:size]
            if not picked:
                return [], False
            moves = {j.id: (f"staging on {hpc_id}", {"worker": rt.worker_id}) for j in picked}
            return rt.store.transition_many(JobStatus.STAGING, moves,
                                            expect=[JobStatus.QUEUED]), more
    except LockError:  # the lock's holder died or is slow: the poller offers it again
        log.warning("admission lock of %s not acquired", hpc_id)
        return [], False
    except REDIS_DOWN:  # the jobs stay queued; the refill after Redis returns offers them
        log.warning("admission on %s waits for Redis", hpc_id)
        return [], False


def _open(rt, hpc_id: str, tell) -> bool:
    """The HPC takes jobs now: not known unreachable (`tell(why)` then), not drained."""
    state = rt.store.hpc_state(hpc_id)
    if state.reachable is False:
        tell(f"waiting for {hpc_id}: {state.message or 'unreachable'}")
        return False
    return not state.draining


def _open_for(rt, job) -> bool:
    """_open for one job's admission: the job is told why it waits."""
    return _open(rt, job.hpc, lambda why: _say_waiting(rt, job, why))


def _tell_queued(rt, hpc_id: str, why: str) -> None:
    """_say_waiting for every queued job of the HPC not told so yet (an outage: rare)."""
    _, queued = rt.store.admission_view(hpc_id)
    for job in rt.store.get_jobs(j.id for j in queued).values():
        _say_waiting(rt, job, why)


def _say_waiting(rt, job, why: str) -> None:
    """Tell the user why the job waits, once per reason (not at every offer)."""
    if job.message != why:
        rt.store.update_job(job.id, message=why)
        rt.store.add_event(job.id, "waiting", why)
