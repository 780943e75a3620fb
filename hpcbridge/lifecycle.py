"""The job lifecycle as data (pure): which status may follow which.

queued → staging → submitted → running → finishing → succeeded | failed | cancelled
"""
from __future__ import annotations

TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"staging", "failed", "cancelled"}),
    # back to queued when the HPC cannot be reached: a condition of the HPC, not the job
    "staging": frozenset({"queued", "submitted", "failed", "cancelled"}),
    "submitted": frozenset({"running", "finishing", "failed", "cancelled"}),
    "running": frozenset({"finishing", "failed", "cancelled"}),
    "finishing": frozenset({"succeeded", "failed", "cancelled"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}
FINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
ACTIVE = frozenset(TRANSITIONS) - FINAL
# jobs that hold a place in the scheduler (what capacity counts)
IN_SCHEDULER = frozenset({"staging", "submitted", "running"})

# the Job column stamped when a status is entered
TIMESTAMPS = {
    "queued": "queued_at",
    "staging": "staging_at",
    "submitted": "submitted_at",
    "running": "started_at",
    "succeeded": "finished_at",
    "failed": "finished_at",
    "cancelled": "finished_at",
}


def sources_of(status: str) -> frozenset[str]:
    """Every status from which `status` may be entered."""
    return frozenset(s for s, nxt in TRANSITIONS.items() if status in nxt)


def can_move(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, ())
