"""A sweep on Slurm tells its owner once, when every element has ended, and its folder on
the HPC (layout.SweepDir) is removed then — end to end: the real middleware and maintainer
processes, the stack's Slurm over sshd, a real SMTP server (aiosmtpd) and a real webhook
receiver started by the test (test_notifications.py's). Removal follows the HPC's cleanup
setting as a job's work dir does: `on_success` here, so a sweep with a cancelled element
keeps its folder. The same message on the local handler, whose elements are plain jobs.
Fixtures: conftest.py and test_notifications.py."""
from __future__ import annotations

import time

import pytest
from maintainer_support import cancel_leftovers, event_types, remote, token
from services import Services, remove_remote, slurm_hpc, wait_for_sshd
from test_notifications import Receiver, notifier_config, verified, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(400)]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def post_sweep(http, points: list[dict], notify: dict) -> dict:
    r = http.post("sweeps", json={"app": "hello", "hpc": "slurm", "params": points,
                                  "notify": notify})
    assert r.status_code == 201, r.text
    return r.json()


def folder_exists(stack, run_id: str, sweep_id: str) -> bool:
    path = f"hpcbridge-it/{run_id}/alice/{sweep_id}"
    return remote(stack, f"test -e {path} && echo yes || echo no").strip() == "yes"


def wait_sweep_ended(http, svc, sweep_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = http.get(f"sweeps/{sweep_id}").json()
        if info.get("ended_at"):
            return info
        time.sleep(0.3)
    raise AssertionError(f"sweep {sweep_id} did not end: {info}\n"
                         f"{svc.log('maintainer')[-3000:]}")


def test_a_sweep_is_told_once_when_it_ends_and_its_folder_is_removed(tmp_path, stack, hub,
                                                                      ssh_target, receiver,
                                                                      mailbox):
    wait_for_sshd(stack)
    svc = Services(str(tmp_path / "s"), stack, workers=2, auth="hub",
                   extra_config=notifier_config(mailbox))
    svc.hpcs = [slurm_hpc(stack, svc.run_id, capacity=8, cleanup="on_success")]
    try:
        svc.start()
        alice = svc.client(token(stack, "alice"))
        bad = alice.post("sweeps", json={"app": "hello", "hpc": "slurm", "params": [{}],
                                         "notify": {"webhook": "ftp://127.0.0.1/x"}})
        assert bad.status_code == 422 and "notify.webhook" in bad.json()["message"], bad.text
        done = post_sweep(alice, [{"name": f"p{i}", "lines": 1, "delay": 0} for i in range(3)],
                          {"webhook": receiver.url("/done"), "email": "alice@example.org"})
        mixed = post_sweep(alice, [{"name": "quick", "lines": 1, "delay": 0},
                                   {"name": "long", "lines": 60, "delay": 1}],
                           {"webhook": receiver.url("/mixed")})
        assert "notify" not in done and done["ended_at"] is None

        ended = wait_sweep_ended(alice, svc, done["id"])
        assert ended["done"] and ended["counts"] == {"succeeded": 3}, \
            [(j["status"], j["message"]) for j in
             alice.get(f"sweeps/{done['id']}/jobs").json()["jobs"]]
        hook = wait_for(lambda: receiver.to("/done"))
        mail = wait_for(lambda: mailbox.to("alice@example.org"))
        data = verified(hook[0])
        assert data["event"] == "sweep.ended" and data["sweep_id"] == done["id"]
        assert (data["user"], data["app"], data["hpc"], data["size"]) == \
            ("alice", "hello", "slurm", 3)
        assert data["counts"] == {"succeeded": 3}
        assert data["link"].endswith(f"/api/v1/sweeps/{done['id']}")
        message = mail[0]["message"]
        assert "sweep" in message["Subject"] and "3 succeeded" in message["Subject"]
        assert data["link"] in message.get_content()
        # the sweep's folder on the HPC goes once every element's results are home
        deadline = time.monotonic() + 30
        while folder_exists(stack, svc.run_id, done["id"]) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not folder_exists(stack, svc.run_id, done["id"]), svc.log("maintainer")
        elements = alice.get(f"sweeps/{done['id']}/jobs").json()["jobs"]
        types = [t for j in elements for t in event_types(alice, j["id"])]
        assert types.count("sweep_cleaned") == 1 and types.count("notified") == 2
        for job in elements:  # results home before the folder went
            assert alice.get(f"jobs/{job['id']}/results/result/greeting.txt").status_code == 200

        # the other sweep: its long element cancelled alone; the sweep ends with it
        long = [j for j in alice.get(f"sweeps/{mixed['id']}/jobs").json()["jobs"]
                if j["sweep_index"] == 1][0]
        svc.wait_job(alice, long["id"], statuses=("running",), timeout=120)
        assert alice.post(f"jobs/{long['id']}/cancel").status_code == 202
        ended = wait_sweep_ended(alice, svc, mixed["id"])
        assert ended["counts"] == {"succeeded": 1, "cancelled": 1}
        data = verified(wait_for(lambda: receiver.to("/mixed"))[0])
        assert data["counts"] == {"cancelled": 1, "succeeded": 1}
        time.sleep(2)  # a duplicate (two workers, a second claim) would have arrived by now
        assert [len(receiver.to(p)) for p in ("/done", "/mixed")] == [1, 1]
        assert len(receiver.requests) == 2 and len(mailbox.mails) == 1  # none per element
        # on_success: a sweep with a cancelled element keeps its folder, as such a job would
        assert folder_exists(stack, svc.run_id, mixed["id"])
    finally:
        try:
            cancel_leftovers(svc, stack)
        finally:
            svc.stop()
            remove_remote(stack, f"hpcbridge-it/{svc.run_id}")


def test_a_sweep_on_the_local_handler_is_told_once(local_services, receiver, mailbox):
    """Without arrays the elements are plain jobs (batched submits, own finishing tasks):
    the same one message when the last of them ends."""
    svc = local_services(capacity=4, workers=2, extra_config=notifier_config(mailbox))
    alice = svc.client("t-alice")
    r = alice.post("sweeps", json={"app": "hello", "hpc": "local", "grid": {
        "name": ["a", "b", "c", "d"]}, "base": {"lines": 1, "delay": 0},
        "notify": {"webhook": receiver.url("/local")}})
    assert r.status_code == 201, r.text
    ended = wait_sweep_ended(alice, svc, r.json()["id"], timeout=120)
    assert ended["counts"] == {"succeeded": 4}
    data = verified(wait_for(lambda: receiver.to("/local"))[0])
    assert (data["event"], data["sweep_id"], data["counts"]) == \
        ("sweep.ended", ended["id"], {"succeeded": 4})
    time.sleep(1.5)  # a duplicate would have arrived by now
    assert len(receiver.requests) == 1 and mailbox.mails == []
