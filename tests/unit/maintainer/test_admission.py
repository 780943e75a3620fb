"""Admission (maintainer/admission.py): fair across users, each user's own order kept,
never more than the HPC has room for, nothing admitted to an HPC known to be down."""
from maintainer_helpers import add_app, new_job

from hpcbridge.maintainer import admission as A


class _Q:
    def __init__(self, id_, user):
        self.id, self.user = id_, user

    def __repr__(self):
        return self.id


def queue_of(spec: str) -> list:
    """'a a b' → queued jobs a1 a2 b1 (oldest first)."""
    seen: dict = {}
    jobs = []
    for user in spec.split():
        seen[user] = seen.get(user, 0) + 1
        jobs.append(_Q(f"{user}{seen[user]}", user))
    return jobs


def picked(queued, running, n):
    return [j.id for j in A.fair_pick(queued, queue_of(running), n)]


def test_fair_pick_round_robin_from_empty():
    assert picked(queue_of("a a a a a b b"), "", 5) == ["a1", "b1", "a2", "b2", "a3"]


def test_fair_pick_gives_a_freed_slot_to_the_user_with_fewest_running():
    # alice queued 15 first and holds all 4 slots; bob queued 5 after her: when one slot
    # frees, it is bob's — slots freeing one at a time must not all go to alice
    queued = queue_of("a " * 11 + "b " * 5)
    assert picked(queued, "a a a", 1) == ["b1"]
    assert picked(queued, "a a b", 1) == ["b1"]
    assert picked(queued, "a a b b", 1) == ["a1"]  # equal load: who waited longest
    assert picked(queued, "a a b", 3) == ["b1", "a1", "b2"]


def test_fair_pick_keeps_each_users_order_and_bounds():
    queued = queue_of("a b a c b a")
    assert picked(queued, "", 0) == [] and picked([], "a", 3) == []
    out = picked(queued, "", 10)
    assert sorted(out) == sorted(j.id for j in queued)
    for user in "abc":
        mine = [j for j in out if j.startswith(user)]
        assert mine == sorted(mine)


def test_next_to_admit_fills_only_the_free_slots():
    class HPC:
        capacity = 3
    queued = queue_of("a a b")
    assert [j.id for j in A.next_to_admit(HPC, queued, queue_of("c"))] == ["a1", "b1"]
    assert A.next_to_admit(HPC, queued, queue_of("c c c")) == []
    assert A.next_to_admit(HPC, queued, queue_of("c c c c")) == []  # over capacity


def test_a_job_of_an_hpc_its_poller_found_down_is_not_admitted(runtime, tmp_path):
    """A hung login node must not hold a worker for a connect budget per job: until the
    poller finds it answering again, its queued jobs stay queued without a connection."""
    add_app(runtime.store, tmp_path)
    job = new_job(runtime.store)
    runtime.store.set_hpc_state("local", reachable=False, message="hangs")
    assert not A.admit(runtime, job)
    assert not A.admit(runtime, runtime.store.get_job(job.id))  # offered again
    got = runtime.store.get_job(job.id)
    assert got.status == "queued" and got.message == "waiting for local: hangs"
    assert [e.type for e in runtime.store.events(job.id)].count("waiting") == 1
    runtime.store.set_hpc_state("local", reachable=True, message=None)
    assert A.admit(runtime, job)
    assert runtime.store.get_job(job.id).status == "staging"
