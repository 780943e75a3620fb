"""Pure decisions of the job state machine: what a scheduler's answer means for a job."""
from __future__ import annotations

from dataclasses import dataclass

from hpcbridge.connectors.state import RUNNING, JobState
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
