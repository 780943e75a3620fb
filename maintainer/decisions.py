"""Pure decisions of the job state machine: what a scheduler's answer means for a job."""
from __future__ import annotations

import re
from dataclasses import dataclass

from hpcbridge.connectors.errors import ConnectorError, HPCUnavailable
from hpcbridge.connectors.state import RUNNING, SUBMITTED, JobState
from hpcbridge.lifecycle import FINAL, JobStatus

S = JobStatus
# the statuses of a job the scheduler holds: the poller asks about these
WATCHED = (S.SUBMITTED, S.RUNNING)


@dataclass(frozen=True)
class Decision:
    status: JobStatus | None  # new status, or None to leave the job as it is
    message: str = ""
    fields: dict | None = None


def on_scheduler_state(current: str, state: JobState, scheduler: str) -> Decision:
    """What a status_many answer means for a job that is `submitted` or `running`.

    Pending and "not known yet" (accounting lags the controller) change nothing; an end of
    any kind goes through `finishing`, which collects logs and results first."""
    if state.status == RUNNING:
        if current == S.SUBMITTED:
            return Decision(S.RUNNING, f"running on {scheduler} ({state.raw_state})")
        return Decision(None)
    if state.status not in FINAL:
        return Decision(None)
    outcome = JobStatus(state.status)
    if outcome == S.SUCCEEDED:
        message = f"{scheduler} job completed; collecting results"
    elif outcome == S.CANCELLED:
        message = f"{scheduler} job cancelled; collecting logs"
    else:
        message = f"{scheduler} job failed ({state.reason or state.raw_state}); collecting logs"
    return Decision(S.FINISHING, message, {
        "outcome": outcome.value, "exit_code": state.exit_code,
        "scheduler_state": state.raw_state, "elapsed_seconds": state.elapsed_seconds,
        "cpus": state.cpus})


def held_message(state: JobState, scheduler: str) -> str | None:
    """What to tell the user of a pending job the scheduler holds (JobHeldAdmin, JobHeldUser,
    "launch failed requeued held" after a controller crash): it waits until someone
    releases it. None for any other state."""
    reason = state.reason or ""
    if state.status != SUBMITTED or "held" not in reason.lower():
        return None
    return (f"held by {scheduler} ({reason}): it waits until it is released (scontrol "
            "release, by you or the site's administrators)")


def final_message(outcome: str, exit_code: int | None, scheduler_state: str | None,
                  reason: str | None = None) -> str:
    """The message a finished job keeps: the scheduler's word for an unusual end."""
    if outcome == S.SUCCEEDED:
        return "succeeded"
    if outcome == S.CANCELLED:
        return "cancelled"
    state = (scheduler_state or "").split(" ")[0]
    if state and state not in ("FAILED", "COMPLETED"):
        return f"failed: {state}" + (f" (exit code {exit_code})" if exit_code else "")
    return f"failed with exit code {exit_code}" if exit_code is not None else \
        f"failed: {reason or state or 'unknown reason'}"


# --- whose record is it, and what to do about a job the scheduler no longer shows ----------
OURS, REUSED, UNSEEN, NAMELESS = "ours", "reused", "unseen", "nameless"


def record_verdict(state: JobState | None, expected_name: str) -> str:
    """Whether the scheduler's record under a job's id is that job's.

    OURS: act on it. REUSED: the record carries another job's name, so the id was given
    to someone else (a controller that lost its newest jobs): look the job up by name.
    UNSEEN: no record, or "not known yet" (accounting lags): wait, and look it up by name
    once that lasts (Maintainer.lost_after_seconds). NAMELESS: a record whose name the
    scheduler has not (or never) recorded (name ""; Slurm's accounting says "allocation"
    right after a job ends, and for good for a job whose controller died before it wrote
    the name): it may be another job's under a reused id, so it is never acted on as is —
    wait, like UNSEEN. A record without a name at all (None: a handler that reports no
    names) is taken as ours."""
    if state is None:
        return UNSEEN
    name = getattr(state, "name", None)
    if name == "":
        return NAMELESS
    if name and name != expected_name:
        return REUSED
    return UNSEEN if state.status not in (RUNNING, S.SUBMITTED, *FINAL) else OURS


def on_lookup(current: str, scheduler_id: str, found: JobState | None, scheduler: str,
              unseen_seconds: float, lost_after: float,
              by_id: JobState | None = None, nameless_seconds: float = 0.0) -> Decision:
    """What a lookup by name (`found`: the record the scheduler keeps under the job's name,
    or None when neither its queue nor its accounting knows the name) means for a watched
    job whose record by id was missing, not final, or another job's.

    Found under another id: the job is followed under that id (fields). Found nowhere: the
    scheduler lost it, it ends failed rather than stay `running`. Found under its own id
    with a state (running, pending, ended): that record carries the job's name, so it is
    the job's — acted on as a status answer (the answer by id was another job's only
    because accounting had not yet recorded this one under the reused id). Found under its
    own id without a state (only accounting remembers it, its end never recorded): lost
    once unseen for twice lost_after. Otherwise: wait.

    `by_id`: the record under the job's id that sent it here. A nameless one that says the
    job ended, nameless for lost_after in a row (`nameless_seconds`; another job's row
    would carry its name by then: accounting lags by seconds), is the job's own row whose
    name was never written (the controller died right after the job ended): the job ran,
    it is collected."""
    if found is None:
        if by_id is not None and getattr(by_id, "name", None) == "" and \
                by_id.status in FINAL:
            if nameless_seconds >= lost_after:
                return on_scheduler_state(current, by_id, scheduler)
            return Decision(None)
        return Decision(S.FAILED, f"the scheduler lost this job: {scheduler} no longer "
                                  f"knows job {scheduler_id} and has no other job of its name")
    if found.scheduler_id != scheduler_id:
        return Decision(None, f"{scheduler} knows this job as {found.scheduler_id} (id "
                              f"{scheduler_id} was given to another job)",
                        {"scheduler_id": found.scheduler_id})
    if found.status in (RUNNING, S.SUBMITTED, *FINAL):
        return on_scheduler_state(current, found, scheduler)
    if unseen_seconds >= 2 * lost_after:
        return Decision(S.FAILED, f"the scheduler lost this job: {scheduler} neither queues "
                                  f"job {scheduler_id} nor recorded its end")
    return Decision(None)


def exit_marker_status(data: bytes) -> int | None:
    """A job's exit marker (layout.EXIT_MARKER: the job's own file, so untrusted) as an
    exit status 0..255; None for anything else."""
    text = data.strip()
    if not re.fullmatch(rb"[0-9]{1,3}", text) or int(text) > 255:
        return None
    return int(text)


def ended_though_lost(code: int, scheduler_id: str, scheduler: str) -> Decision:
    """A job the scheduler lost whose exit marker says it ran to its end (slurmd finishes
    a job its controller forgot): collected as ended, not failed as lost."""
    outcome = S.SUCCEEDED if code == 0 else S.FAILED
    return Decision(S.FINISHING, f"{scheduler} lost the record of job {scheduler_id}, but "
                                 f"the job ran to its end (exit code {code}); collecting "
                                 f"{'results' if code == 0 else 'logs'}",
                    {"outcome": outcome.value, "exit_code": code})


# --- what a remote error means for a job -------------------------------------------------
WAIT, WAIT_UNHEALTHY, FAIL, RETRY_LOCAL = "wait", "wait_unhealthy", "fail", "retry_local"
# callables (exc, reading) told of each reading: maintainer/metrics.py counts errors by class
ERROR_HOOKS: list = []


def on_error(exc: BaseException) -> str:
    """The one reading of an error for a job's step (design: "Failures have classes").

    WAIT: the HPC (connection, deadline, controller): the job stays where it is and is
    tried again. WAIT_UNHEALTHY: the site's settings (host key, key): the same, and the
    HPC is marked unhealthy for the admin. FAIL: the job's own (its files, a limit the
    scheduler refuses). RETRY_LOCAL: this machine (the result store full or read-only):
    the job stays, tried again."""
    reading = _reading(exc)
    for hook in ERROR_HOOKS:
        try:
            hook(exc, reading)
        except Exception:  # an observer never changes a job's fate
            pass
    return reading


def _reading(exc: BaseException) -> str:
    if isinstance(exc, HPCUnavailable):
        return WAIT_UNHEALTHY if exc.site_misconfigured else WAIT
    if isinstance(exc, ConnectorError):  # before OSError: a missing remote file is both
        return FAIL
    if isinstance(exc, OSError):
        return RETRY_LOCAL
    return FAIL
