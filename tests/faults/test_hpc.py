"""The HPC's side: its login node's sshd killed (with every session) and restarted, an HPC
that cannot be reached when everything starts, and a second HPC that hangs (accepts TCP and
never speaks SSH) next to a good one. The sshd is a private one on the stack's login node
(same host key, user and Slurm), never the stack's own."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytest
import redis
from harness import Fleet, at, check, summary
from maintainer_support import add_app, cycle_stats
from services import REPO, slurm_hpc

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(300)]
POLL = 1.0  # the Slurm HPC's poll interval (services.slurm_hpc)
PACE_TOLERANCE = 1.0  # seconds on top of one poll interval: scheduling noise of 2 cores
JOB_TOLERANCE = 5.0  # a job's queued→sbatch also waits for a free worker task
TURN_TOLERANCE = 10.0  # queued→finished also waits in Slurm's queue, shared with others


def test_sshd_killed_and_restarted_while_jobs_stage_and_run(faults, stack):
    sshd = faults.sshd()
    svc = faults.start(stack=sshd.stack, capacity=12)
    fleet = Fleet(svc, stack)
    fleet.submit(32)
    seen = fleet.until(lambda s: s["running"] >= 3 and s["queued"] >= 4, 90)
    sshd.kill()
    time.sleep(5)
    sshd.start()
    check("sshd-restart", fleet, 170, at=at(seen))


def test_hpc_unreachable_when_everything_starts(faults, stack):
    sshd = faults.sshd(start=False)
    svc = faults.start(stack=sshd.stack, capacity=40)
    fleet = Fleet(svc, stack)
    fleet.submit(32)
    time.sleep(15)
    seen = fleet.look()
    sshd.start()
    check("hpc-unreachable-at-start", fleet, 170, at=at(seen))


def pace(svc, fleet: Fleet, red) -> dict:
    """The good HPC's pace while it had jobs: gaps between cycle starts, cycle lengths,
    and the jobs' queued→finished times (p50/p90, seconds)."""
    _, cycles = cycle_stats(svc, red, "slurm")
    busy = sorted((c for c in cycles if c["watched"]), key=lambda c: c["t"])
    gaps = [b["t"] - a["t"] for a, b in zip(busy, busy[1:])]
    done = [j for j in fleet.final.values() if j and j.get("finished_at")]
    turn = [json_time(j["finished_at"]) - json_time(j["queued_at"]) for j in done]
    # queued→sbatch: hpcbridge's own pace, whatever Slurm's queue (shared with other suites)
    to_slurm = [json_time(j["submitted_at"]) - json_time(j["queued_at"]) for j in done
                if j.get("submitted_at")]

    def p(xs, q):
        return round(statistics.quantiles(xs, n=10)[q - 1], 2) if len(xs) >= 2 else None
    return {"cycles": len(busy), "gap_p50": p(gaps, 5), "gap_p90": p(gaps, 9),
            "cycle_p90": p([c["seconds"] for c in busy], 9), "turn_p50": p(turn, 5),
            "to_slurm_p50": p(to_slurm, 5), "to_slurm_p90": p(to_slurm, 9)}


def json_time(value: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(value).timestamp()


def hung_app(faults, svc, stack) -> str:
    """hello's parameters, runnable on both HPCs (the hung one's jobs only ever wait)."""
    rules = json.loads((Path(REPO) / "hpcbridge/apps/hello/manifest.json").read_text())
    return add_app(svc, stack, faults.tmp, "both",
                   'echo "Hello, $param_name!" > "$HPCBRIDGE_RESULT_DIR/greeting.txt"',
                   hpcs=("slurm", "hung"), param_rules=rules["param_rules"])


def test_a_hung_hpc_does_not_slow_the_other(faults, stack):
    red = redis.Redis.from_url(stack["redis_url"])
    base = faults.start(capacity=40)
    fleet_a = Fleet(base, stack)
    fleet_a.submit(32)
    check("hung-hpc-baseline", fleet_a, 110)
    before = pace(base, fleet_a, red)
    base.stop()

    hung = faults.hung()
    dead = slurm_hpc(stack, "hung", id="hung", name="Hangs", port=hung.port)
    svc = faults.start(capacity=40, extra_hpcs=[dead])
    waiting = Fleet(svc, stack, app=hung_app(faults, svc, stack), hpc="hung")
    waiting.submit(6)
    fleet_b = Fleet(svc, stack)
    fleet_b.submit(32)
    line = check("hung-hpc", fleet_b, 110, hung_jobs=len(waiting.jobs))
    after = pace(svc, fleet_b, red)
    on_hung = waiting.look()
    pace_line = summary("hung-hpc-pace", {}, baseline=json.dumps(before, separators=",:"),
                        hung=json.dumps(after, separators=",:"), hung_connections=len(
                            hung.held), hung_jobs=json.dumps(dict(on_hung), separators=",:"))
    message = f"{line}\n{pace_line}"
    assert hung.held, message  # the maintainer really tried the hung HPC
    assert not (on_hung["failed"] or on_hung["cancelled"]), message  # an outage is a wait
    assert before["cycles"] >= 5 and after["cycles"] >= 5, message
    for key in ("gap_p50", "gap_p90"):
        assert after[key] - before[key] <= POLL + PACE_TOLERANCE, message
    # the good HPC's jobs reach sbatch as fast as without the hung one
    assert after["to_slurm_p50"] - before["to_slurm_p50"] <= POLL + JOB_TOLERANCE, message
    # ... and end as fast (it grew 15 s → 47 s while a staging task waited out the pool's
    # reconnects to the hung HPC, holding a worker; Runtime.work_root waits one attempt)
    assert after["turn_p50"] - before["turn_p50"] <= POLL + TURN_TOLERANCE, message
