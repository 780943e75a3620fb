"""Scale-out on the real stack (issue 21): two middlewares (A, B) on two ports, three
maintainer processes started separately (m1..m3, each with its own data dir), one
PostgreSQL, one Redis, one shared artifact folder.

200 hello jobs, alice and bob in turn, sent to A and B in turn at 4 per second, each POST
with its own Idempotency-Key. Once a third of them have reached `running`, B and the
maintainer holding the Slurm poll lease are killed (SIGKILL); a POST that fails on B is
sent again to A with the same key, and so is one in ten of B's answered POSTs (as if the
answer had been lost): A must answer with B's job. Nothing is restarted. Then: every job
ends, exactly one Slurm job each, no extra job from the retries, every greeting
downloadable from A (and, before the kill, from B), and an admin event stream opened on A
before the first POST delivered every event of every job, those submitted through B
included.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import httpx
import pytest
from scaleout_support import (
    FINAL,
    MAINTAINERS,
    REACHED_RUNNING,
    SUMMARIES,
    StreamWatcher,
    slurm_jobs_by_name,
)

pytestmark = [pytest.mark.stack, pytest.mark.slow]

JOBS = 200
RATE = 4.0  # POSTs per second: submission lasts ~50 s, so it goes on after the kill
KILL_AT = JOBS // 3  # jobs that reached running when B and a maintainer die
DRAIN_SECONDS = 180  # after the last POST, for every job to end
USERS = ("alice", "bob")


def job_spec(i: int) -> tuple[str, str, dict]:
    """alice and bob in turn, two jobs to A then two to B; every third job runs ~6 s."""
    user, mw = USERS[i % 2], ("A", "B")[(i // 2) % 2]
    lines, delay = (2, 3) if i % 3 == 0 else (1, 0)
    return user, mw, {"app": "hello", "hpc": "slurm", "resources": {},
                      "params": {"name": f"{user}-{i}", "lines": lines, "delay": delay}}


class Fleet:
    """The POSTs, the kill, and what was seen on the way."""

    def __init__(self, site, tokens: dict):
        self.site, self.tokens = site, tokens
        self.http = {(mw, u): site.http(mw, tokens[u]) for mw in ("A", "B") for u in USERS}
        self.admin = site.http("A", tokens["admin"])
        self.jobs: dict[str, tuple[str, str, str]] = {}  # id -> (user, via, greeting)
        self.count = Counter()
        self.killed = threading.Event()
        self.kill_note = ""

    def close(self) -> None:
        for c in [*self.http.values(), self.admin]:
            c.close()

    def post(self, i: int) -> None:
        user, mw, body = job_spec(i)
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        targets = [mw, "A", "A", "A"]  # B gone: the same request, same key, to A
        for attempt, target in enumerate(targets):
            try:
                r = self.http[(target, user)].post("jobs", json=body, headers=headers)
            except httpx.TransportError:
                self.count["failovers" if target == "B" else "retries"] += 1
                time.sleep(0.5 * attempt)
                continue
            if r.status_code >= 500:
                self.count["retries"] += 1
                time.sleep(0.5)
                continue
            assert r.status_code == 201, f"POST /jobs on {target}: {r.status_code} {r.text}"
            if r.headers.get("Idempotent-Replayed"):
                self.count["replayed"] += 1
            job_id = r.json()["id"]
            self.jobs[job_id] = (user, target, f"Hello, {body['params']['name']}!\n")
            if target == "B" and i % 10 == 2:
                self.lost_answer(user, body, headers, job_id)
            return
        raise AssertionError(f"job {i} could not be submitted to {mw} nor A")

    def lost_answer(self, user: str, body: dict, headers: dict, job_id: str) -> None:
        """B made the job but its answer never arrived: the client sends the request again
        to A, which must answer with B's job, not make a second one."""
        r = self.http[("A", user)].post("jobs", json=body, headers=headers)
        assert r.status_code == 201 and r.json()["id"] == job_id, r.text
        assert r.headers.get("Idempotent-Replayed") == "true", dict(r.headers)
        self.count["replayed_on_a"] += 1

    def statuses(self) -> dict[str, str]:
        r = self.admin.get("admin/jobs", params={"limit": 1000})
        r.raise_for_status()
        return {j["id"]: j["status"] for j in r.json()["jobs"]}

    def greeting_ok(self, mw: str, job_id: str) -> bool:
        user, _, greeting = self.jobs[job_id]
        try:
            r = self.http[(mw, user)].get(f"jobs/{job_id}/results/result/greeting.txt")
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and r.text == greeting

    def watch_and_kill(self, stop: threading.Event) -> None:
        """Once KILL_AT jobs reached running (or three quarters are submitted): download what
        already succeeded through B, then SIGKILL B and the poll lease's maintainer."""
        while not stop.is_set():
            try:
                seen = self.statuses()
            except httpx.HTTPError:
                seen = {}
            reached = sum(s in REACHED_RUNNING for s in seen.values())
            submitted = len(self.jobs)
            if reached >= KILL_AT or submitted >= 3 * JOBS // 4:
                done = [j for j, s in seen.items() if s == "succeeded" and j in self.jobs]
                for job_id in done:
                    ok = self.greeting_ok("B", job_id)
                    self.count["b_results_ok" if ok else "b_results_bad"] += 1
                    if ok and self.jobs[job_id][1] == "A":
                        self.count["b_results_of_a_jobs"] += 1
                victim = self.site.poller(self.tokens["admin"], "slurm")
                self.site.kill("B")
                self.site.kill(victim)
                self.kill_note = (f"killed=B,{victim}(poller) at=submitted:{submitted},"
                                  f"reached_running:{reached},succeeded:{len(done)}")
                self.killed.set()
                return
            stop.wait(1.0)


@pytest.mark.timeout(360)
def test_two_middlewares_three_maintainers_lose_nothing(site, stack, hub):
    start, wall = time.monotonic(), time.time()
    stream = StreamWatcher(site.api_of("A"), hub.tokens["admin"]).start()
    fleet = Fleet(site, hub.tokens)
    stop = threading.Event()
    killer = threading.Thread(target=fleet.watch_and_kill, args=(stop,), daemon=True)
    killer.start()
    try:
        for i in range(JOBS):
            time.sleep(max(0.0, start + i / RATE - time.monotonic()))
            fleet.post(i)
        submit_s = time.monotonic() - start
        assert fleet.killed.wait(30), "B and the maintainer were never killed"

        deadline = time.monotonic() + DRAIN_SECONDS
        while True:
            seen = fleet.statuses()
            if all(seen.get(j) in FINAL for j in fleet.jobs) or time.monotonic() > deadline:
                break
            time.sleep(2)
        drain_s = time.monotonic() - start

        ids = list(fleet.jobs)
        # the stream has until the last event of every job arrives, bounded
        events = {}
        stream_deadline = time.monotonic() + 20
        for job_id in ids:
            user = fleet.jobs[job_id][0]
            events[job_id] = fleet.http[("A", user)].get(f"jobs/{job_id}/events").json()
            while (len(stream.messages.get(job_id, [])) < len(events[job_id])
                   and time.monotonic() < stream_deadline):
                time.sleep(0.2)
        stream.stop()

        via_b = [j for j in ids if fleet.jobs[j][1] == "B"]
        status = {j: seen.get(j) for j in ids}
        succeeded = [j for j in ids if status[j] == "succeeded"]
        lost = [j for j in ids if fleet.http[("A", fleet.jobs[j][0])].get(
            f"jobs/{j}").status_code != 200]
        slurm = slurm_jobs_by_name(stack, wall, ids, settle=45)
        short_stream = [j for j in ids if len(stream.messages.get(j, [])) != len(events[j])
                        or (stream.messages.get(j) or [(0, "")])[-1][1] != status[j]]
        counts = {
            "jobs": len(ids), "in_db": len(seen),
            "ended": sum(s in FINAL for s in status.values()),
            "succeeded": len(succeeded),
            "lost": len(lost),
            "duplicated": sum(len(s) > 1 for s in slurm.values()),
            "no_slurm_job": sum(not s for s in slurm.values()),
            "no_results": sum(not fleet.greeting_ok("A", j) for j in succeeded),
            "via_a": len(ids) - len(via_b), "via_b": len(via_b),
            "stream_missed_b": sum(j in short_stream for j in via_b),
            "stream_missed": len(short_stream),
            "stream_dup_ids": len(stream.event_ids) - len(set(stream.event_ids)),
            "stream_reconnects": stream.reconnects,
            "failovers": fleet.count["failovers"], "retries": fleet.count["retries"],
            "replayed": fleet.count["replayed"],
            "replayed_on_a": fleet.count["replayed_on_a"],
            "results_from_b": fleet.count["b_results_ok"],
            "results_from_b_of_a_jobs": fleet.count["b_results_of_a_jobs"],
            "results_from_b_bad": fleet.count["b_results_bad"],
        }
        survivors = [n for n in ("A", *MAINTAINERS) if site.alive(n)]
        line = ("scaleout " + " ".join(f"{k}={v}" for k, v in counts.items())
                + f" {fleet.kill_note} survivors={','.join(survivors)}"
                + f" artifact_store={'shared' if site.shared_store else 'none'}"
                + f" submit_s={submit_s:.0f} drain_s={drain_s:.0f}"
                + f" total_s={time.monotonic() - start:.0f}")
        SUMMARIES.append(line)
        print(line)

        odd = [(j, status[j], slurm[j]) for j in ids
               if status[j] != "succeeded" or len(slurm[j]) != 1][:6]
        why = f"{line}\nodd jobs: {odd}\n" + "\n".join(
            f"--- {n}\n{site.log(n, 1500)}" for n in ("A", *MAINTAINERS))
        assert len(seen) == JOBS, why  # a retried POST made no second job
        bad = ("lost", "duplicated", "no_slurm_job", "no_results", "stream_missed",
               "stream_dup_ids", "results_from_b_bad")
        assert {k: counts[k] for k in bad} == dict.fromkeys(bad, 0), why
        assert counts["succeeded"] == JOBS, why
        assert counts["via_b"] > 0 and counts["results_from_b_of_a_jobs"] > 0, why
        assert len(survivors) == 3, why  # A and two maintainers ran to the end
    finally:
        stop.set()
        stream.stop()
        fleet.close()
