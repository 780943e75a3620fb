"""A job's own files and this machine's result store: logs that block (a named pipe), are
unreadable (mode 000) or are replaced while the poller tails them, and a result store that
refuses every write while jobs finish. The techniques are those of
tests/integration/maintainer/test_job_file_faults.py, here with a fleet of 33 jobs."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import statistics
import subprocess
import time

import harness
import pytest
import redis
from harness import Fleet, at, check, summary
from maintainer_support import cycle_stats, remote

from hpcbridge.server.store import Store

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(300)]
POLL = 1.0  # the Slurm HPC's poll interval (services.slurm_hpc)
PACE_TOLERANCE = 1.0  # seconds on top of one poll interval: scheduling noise of 2 cores
JOBS = 33
# what is done to the stdout.log of one running long job, in its remote work dir
FAULTS = {
    "fifo": "rm -f stdout.log && mkfifo stdout.log",
    "chmod": "chmod 000 stdout.log",
    "replace": "printf 'replaced\\n' > stdout.log.new && mv -f stdout.log.new stdout.log",
}
VICTIMS = ("fifo",) * 3 + ("chmod",) * 2 + ("replace",) * 2
UNREADABLE = {"fifo", "chmod"}  # these get a log_unreadable event; a replaced log is readable
READ_ONLY_SECONDS = 15
BASELINE_CYCLES = 8  # the poller's cycles watching jobs before the first strike
GRACE = 2.0  # a collection swapped in just before the store turned read-only ends after it


def longer_params(i: int, user: str) -> dict:
    """Every third job runs ~20 s writing a line every 2 s (its log is read while it is
    broken); the others ~1 s."""
    lines, delay = (10, 2) if i % 3 == 0 else (1, 0)
    return {"name": f"{user}-{i}", "lines": lines, "delay": delay}


def store_of(svc) -> Store:
    return Store(svc.db_url, create=False)


def stamp(value: str | None) -> float | None:
    """An API time as epoch seconds (a naive time is UTC)."""
    if not value:
        return None
    t = dt.datetime.fromisoformat(value)
    return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp()


def p(xs: list[float], q: int) -> float | None:
    return round(statistics.quantiles(xs, n=10)[q - 1], 3) if len(xs) >= 2 else None


# --- (a) logs that block, are unreadable or are replaced -------------------------------------
def strike_logs(svc, long_ids: list[str], store: Store,
                timeout: float) -> tuple[dict[str, str], float]:
    """Once the poller has watched jobs for BASELINE_CYCLES cycles, and as long jobs run
    with a log it has read from, break their stdout.log, one fault of VICTIMS each:
    (job id → fault, the time of the first strike)."""
    struck: dict[str, str] = {}
    first = None
    deadline = time.monotonic() + timeout
    while len(struck) < len(VICTIMS):
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(struck)} long jobs ran with a log: {struck}")
        if first is None and pace_of(svc, 0, time.time())["cycles"] < BASELINE_CYCLES:
            time.sleep(0.3)  # the pace before the fault first
            continue
        jobs = store.get_jobs(long_ids)
        ready = [j for j in jobs.values() if j.id not in struck and j.status == "running"
                 and j.stdout_size > 0 and j.remote_dir]
        commands = []
        for job, fault in zip(ready, VICTIMS[len(struck):]):
            commands.append(f"(cd {job.remote_dir} && {FAULTS[fault]})")
            struck[job.id] = fault
        if commands:
            first = first or time.time()
            remote(svc.stack, " && ".join(commands))
        time.sleep(0.3)
    return struck, first


def pace_of(svc, start: float, end: float) -> dict:
    """The poller's cycles that watched jobs within [start, end): gaps between their
    starts and their lengths (seconds)."""
    _, cycles = cycle_stats(svc, redis.Redis.from_url(svc.stack["redis_url"]), "slurm")
    busy = sorted((c for c in cycles if c["watched"] and start <= c["t"] < end),
                  key=lambda c: c["t"])
    gaps = [b["t"] - a["t"] for a, b in zip(busy, busy[1:])]
    lengths = [c["seconds"] for c in busy]
    return {"cycles": len(busy), "gap_p50": p(gaps, 5), "gap_p90": p(gaps, 9),
            "cycle_p50": p(lengths, 5), "cycle_p90": p(lengths, 9),
            "cycle_max": max(lengths, default=None)}


def unreadable_events(store: Store, job_id: str) -> int:
    return sum(e.type == "log_unreadable" for e in store.events(job_id))


def test_logs_that_block_are_unreadable_or_replaced_stop_no_job(faults, stack, monkeypatch):
    monkeypatch.setattr(harness, "job_params", longer_params)  # Fleet.post reads it
    svc = faults.start(capacity=40)
    store = store_of(svc)
    fleet = Fleet(svc, stack)
    ids = fleet.submit(JOBS)
    struck, struck_at = strike_logs(svc, ids[::3], store, 150)
    seen = fleet.look()
    line = check("job-log-fifo", fleet, 200, at=at(seen),
                 **{f: VICTIMS.count(f) for f in FAULTS})
    events = {i: unreadable_events(store, i) for i in struck}
    victims_end = max(stamp(fleet.final[i]["finished_at"]) for i in struck)
    # "before": from the first job in Slurm to the first strike; "during": from the first
    # strike until the last struck job ended
    first = min(stamp(j["submitted_at"]) for j in fleet.final.values() if j.get("submitted_at"))
    before = pace_of(svc, first, struck_at)
    during = pace_of(svc, struck_at, victims_end)
    pace_line = summary("job-log-fifo-pace", {}, before=json.dumps(before, separators=",:"),
                        during=json.dumps(during, separators=",:"),
                        log_unreadable=json.dumps(
                            {f: sum(events[i] for i in struck if struck[i] == f)
                             for f in FAULTS}, separators=",:"))
    message = f"{line}\n{pace_line}"
    for job_id, fault in struck.items():
        # its results come home though a log cannot be read (check: succeeded, no_results 0)
        assert (events[job_id] >= 1) == (fault in UNREADABLE), f"{job_id} {fault}\n{message}"
    assert before["cycles"] >= BASELINE_CYCLES - 1 and during["cycles"] >= 5, message
    for key in ("gap_p50", "gap_p90", "cycle_p90"):
        assert during[key] - before[key] <= POLL + PACE_TOLERANCE, f"{key}\n{message}"
    assert during["cycle_max"] < 5, message  # no cycle hung on the pipe


# --- (b) the result store refuses every write ------------------------------------------------
@contextlib.contextmanager
def immutable(folder: str):
    """This machine's result store refusing every write (root ignores modes: chattr +i);
    (start, end) of the read-only window, filled in."""
    os.makedirs(folder, exist_ok=True)
    window: list[float] = []
    subprocess.run(["chattr", "+i", folder], check=True, timeout=10)
    window.append(time.time())
    try:
        yield window
    finally:
        subprocess.run(["chattr", "-i", folder], check=True, timeout=10)
        window.append(time.time())


def existing(stack, dirs: list[str]) -> list[str]:
    """Those of the remote dirs that exist (one ssh session)."""
    if not dirs:
        return []
    out = remote(stack, "for d in " + " ".join(dirs) + "; do test -d $d && echo $d; done; true")
    return out.split()


def hold_results(svc, fleet: Fleet, store: Store) -> tuple[list[float], list[str], list[str]]:
    """READ_ONLY_SECONDS of a read-only result store while jobs finish: the window, the
    jobs held in finishing at its end, and those of their remote dirs still there."""
    with immutable(os.path.join(svc.data_dir, "results")) as window:
        time.sleep(READ_ONLY_SECONDS)
        held = [j for j in store.get_jobs(list(fleet.jobs)).values()
                if j.status == "finishing" and j.remote_dir]
        kept = existing(svc.stack, [j.remote_dir for j in held])
    return window, [j.id for j in held], kept


def test_a_result_store_that_refuses_writes_loses_no_results(faults, stack):
    svc = faults.start(capacity=40, cleanup="on_success")
    store = store_of(svc)
    fleet = Fleet(svc, stack)
    fleet.submit(JOBS)
    seen = fleet.until(lambda s: s["succeeded"] >= 3 and
                       s["queued"] + s["staging"] + s["submitted"] + s["running"] >= 10, 120)
    window, held, kept = hold_results(svc, fleet, store)
    line = check("result-store-full", fleet, 200, at=at(seen), held=len(held),
                 kept_remote=len(kept), read_only_s=round(window[1] - window[0], 1))
    start, end = window
    in_window = [i for i, j in fleet.final.items() if j and j["status"] == "succeeded"
                 and start + GRACE <= stamp(j["finished_at"]) <= end]
    waited = [i for i in fleet.jobs
              if any(e.type == "results_waiting" for e in store.events(i))]
    succeeded = [store.get_job(i).remote_dir for i, j in fleet.final.items()
                 if j and j["status"] == "succeeded"]
    deadline = time.monotonic() + 30  # the clean-up follows the transition
    while (left := existing(stack, succeeded)) and time.monotonic() < deadline:
        time.sleep(1)
    extra = summary("result-store-full-window", {}, succeeded_while_read_only=len(in_window),
                    results_waiting_jobs=len(waited), remote_left_after_success=len(left))
    message = f"{line}\n{extra}"
    assert held and waited, message  # the fault bit: jobs waited for the store
    assert not in_window, f"{in_window}\n{message}"  # none succeeded without a place for results
    assert len(kept) == len(held), message  # the only copy stayed on the HPC meanwhile
    assert not left, message  # removed once collected (cleanup on_success)
