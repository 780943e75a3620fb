"""Issue #24: a sweep's elements are charged to the user's quota one by one, as jobs are, and
a user whose quota is used up cannot start a sweep (403, nothing created) — on the local
handler and on Slurm (one job array)."""
from __future__ import annotations

import pytest
from sqlmodel import select
from test_sweeps_engine import ended, post_sweep, wait_for

from hpcbridge.server.models import Job
from hpcbridge.server.store import Store

pytestmark = pytest.mark.timeout(300)


def token(stack, user: str) -> str:
    return stack["hub"]["tokens"][user]


def charged_per_element(svc, http, admin, hpc: str) -> None:
    """Three elements that run about 2 s each end; the quota grew by each one's charge."""
    before = http.get("me").json()["quota"]["used_seconds"]
    sweep = post_sweep(http, hpc, [{"name": f"q{i}", "lines": 3, "delay": 1}
                                   for i in range(3)])
    jobs = wait_for(http, sweep["id"], svc, ended, "the sweep never ended")
    assert [j["status"] for j in jobs] == ["succeeded"] * 3, jobs
    store = Store(svc.db_url, create=False)
    with store.session() as s:
        rows = s.exec(select(Job.elapsed_seconds, Job.cpus)
                      .where(Job.sweep_id == sweep["id"])).all()
    assert all(elapsed and elapsed >= 1 for elapsed, _ in rows), rows  # each one charged
    expected = sum(float(elapsed) * (cpus or 1) for elapsed, cpus in rows)
    used = http.get("me").json()["quota"]["used_seconds"]
    assert used - before == pytest.approx(expected), (used, before, rows)

    # used up: the next sweep is refused whole, and nothing of it is created
    r = admin.put("admin/users/alice/quota", json={"limit_seconds": used})
    assert r.status_code == 200, r.text
    count = http.get("sweeps").json()["total"]
    refused = http.post("sweeps", json={"app": "hello", "hpc": hpc,
                                        "params": [{"name": "x"}, {"name": "y"}]})
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "quota_exceeded" and "quota" in refused.json()["message"]
    assert http.get("sweeps").json()["total"] == count


def test_local_elements_are_charged_one_by_one(local_services):
    svc = local_services(capacity=4)
    charged_per_element(svc, svc.client("t-alice"), svc.client("t-admin"), "local")


def test_slurm_array_elements_are_charged_one_by_one(slurm_services, stack):
    svc = slurm_services(capacity=10)
    charged_per_element(svc, svc.client(token(stack, "alice")),
                        svc.client(token(stack, "admin")), "slurm")
