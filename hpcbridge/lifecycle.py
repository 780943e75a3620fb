"""The job lifecycle as data (pure): the statuses, and which may follow which.

queued → staging → submitted → running → finishing → succeeded | failed | cancelled

This is the one definition of the vocabulary: the API schemas, the OpenAPI document, the
SDK's progress steps, the store and the maintainer all import it.
"""
from __future__ import annotations

import enum
from typing import Literal


class JobStatus(str, enum.Enum):
    """A job's status. A `str` enum: it compares equal to its value and stores as one."""

    QUEUED = "queued"
    STAGING = "staging"
    SUBMITTED = "submitted"
    RUNNING = "running"
    FINISHING = "finishing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


S = JobStatus
STATUSES: tuple[str, ...] = tuple(s.value for s in JobStatus)
# the type of a status in API models (an inline enum in the OpenAPI document)
StatusLiteral = Literal[STATUSES]  # type: ignore[valid-type]

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.QUEUED: frozenset({S.STAGING, S.FAILED, S.CANCELLED}),
    # back to queued when the HPC cannot be reached: a condition of the HPC, not the job
    S.STAGING: frozenset({S.QUEUED, S.SUBMITTED, S.FAILED, S.CANCELLED}),
    S.SUBMITTED: frozenset({S.RUNNING, S.FINISHING, S.FAILED, S.CANCELLED}),
    S.RUNNING: frozenset({S.FINISHING, S.FAILED, S.CANCELLED}),
    S.FINISHING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}
FINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
ACTIVE = frozenset(TRANSITIONS) - FINAL
# the order a job moves through while active (the SDK's progress steps)
STEPS: tuple[JobStatus, ...] = (S.QUEUED, S.STAGING, S.SUBMITTED, S.RUNNING, S.FINISHING)
# jobs that hold a place in the scheduler (what capacity counts)
IN_SCHEDULER = frozenset({S.STAGING, S.SUBMITTED, S.RUNNING})

# the Job column stamped when a status is entered
TIMESTAMPS = {
    S.QUEUED: "queued_at",
    S.STAGING: "staging_at",
    S.SUBMITTED: "submitted_at",
    S.RUNNING: "started_at",
    S.SUCCEEDED: "finished_at",
    S.FAILED: "finished_at",
    S.CANCELLED: "finished_at",
}


def sources_of(status: str) -> frozenset[JobStatus]:
    """Every status from which `status` may be entered."""
    return frozenset(s for s, nxt in TRANSITIONS.items() if status in nxt)


def can_move(current: str, new: str) -> bool:
    try:
        return JobStatus(new) in TRANSITIONS.get(JobStatus(current), ())
    except ValueError:
        return False
