"""Scheduler states and their meaning in the hpcbridge lifecycle (pure functions)."""
from __future__ import annotations

from dataclasses import dataclass

from hpcbridge.lifecycle import FINAL, JobStatus

# The lifecycle statuses a scheduler can report (hpcbridge.lifecycle's), plus one of its own.
SUBMITTED, RUNNING = JobStatus.SUBMITTED, JobStatus.RUNNING
SUCCEEDED, FAILED, CANCELLED = JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED
UNKNOWN = "unknown"  # not known yet: ask again

# Every Slurm job state (squeue long names; sacct uses the same, "CANCELLED by 1001" too).
SLURM_STATES: dict[str, str] = {
    "PENDING": SUBMITTED,
    "REQUEUED": SUBMITTED,
    "REQUEUE_FED": SUBMITTED,
    "REQUEUE_HOLD": SUBMITTED,
    "RESV_DEL_HOLD": SUBMITTED,
    "CONFIGURING": RUNNING,
    "RUNNING": RUNNING,
    "COMPLETING": RUNNING,
    "SUSPENDED": RUNNING,
    "STOPPED": RUNNING,
    "SIGNALING": RUNNING,
    "STAGE_OUT": RUNNING,
    "RESIZING": RUNNING,
    "COMPLETED": SUCCEEDED,
    "CANCELLED": CANCELLED,
    "FAILED": FAILED,
    "TIMEOUT": FAILED,
    "OUT_OF_MEMORY": FAILED,
    "NODE_FAIL": FAILED,
    "PREEMPTED": FAILED,
    "BOOT_FAIL": FAILED,
    "DEADLINE": FAILED,
    "REVOKED": FAILED,
    "SPECIAL_EXIT": FAILED,
}

# Why a failed state failed, in words a user understands.
FAILURE_REASONS = {
    "TIMEOUT": "TIMEOUT: the job exceeded its time limit",
    "OUT_OF_MEMORY": "OUT_OF_MEMORY: the job exceeded its memory limit",
    "NODE_FAIL": "NODE_FAIL: a node of the job failed",
    "PREEMPTED": "PREEMPTED: the job was preempted by the scheduler",
    "BOOT_FAIL": "BOOT_FAIL: a node could not boot",
    "DEADLINE": "DEADLINE: the job could not finish before its deadline",
    "REVOKED": "REVOKED: the job was revoked by the federation",
    "SPECIAL_EXIT": "SPECIAL_EXIT: the job was held with a special exit state",
}


@dataclass(frozen=True)
class JobState:
    """What the scheduler says of one job."""

    scheduler_id: str
    status: str  # one of the statuses above
    raw_state: str = ""
    exit_code: int | None = None
    reason: str | None = None
    elapsed_seconds: int | None = None
    cpus: int | None = None
    # the scheduler's name of the job: a record whose name is not the job's own means the
    # scheduler reused the id for another job (a controller that lost its newest jobs)
    name: str | None = None


def map_slurm_state(raw: str) -> str:
    """Map a Slurm state ('CANCELLED by 1001', 'RUNNING', …) to a lifecycle status."""
    word = raw.strip().split(" ")[0].rstrip("+").upper()
    return SLURM_STATES.get(word, UNKNOWN)


def parse_exit_code(text: str) -> tuple[int | None, int | None]:
    """Slurm's 'code:signal' → (code, signal)."""
    try:
        code, _, signal = text.strip().partition(":")
        return int(code), int(signal or 0)
    except ValueError:
        return None, None


def parse_elapsed(text: str) -> int | None:
    """Slurm elapsed '[D-]HH:MM:SS' or 'MM:SS' → seconds."""
    text = text.strip()
    if not text:
        return None
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [int(p) for p in text.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    h, m, s = parts[-3:]
    return days * 86400 + h * 3600 + m * 60 + s


def parse_squeue(output: str) -> dict[str, JobState]:
    """Parse `squeue -h -o '%i|%T|%r|%M|%C|%j'` output (the name last: it may hold '|')."""
    states = {}
    for line in output.splitlines():
        fields = line.strip().split("|", 5)
        if len(fields) < 2 or not fields[0]:
            continue
        job_id, raw = fields[0], fields[1]
        reason = fields[2] if len(fields) > 2 and fields[2] not in ("None", "") else None
        elapsed = _safe(parse_elapsed, fields[3]) if len(fields) > 3 else None
        cpus = _safe(int, fields[4]) if len(fields) > 4 else None
        name = fields[5] if len(fields) > 5 else None
        for task_id in expand_array_id(job_id):
            states[task_id] = JobState(task_id, map_slurm_state(raw), raw, None, reason,
                                       elapsed, cpus, name)
    return states


def parse_sacct(output: str) -> dict[str, JobState]:
    """Parse `sacct -X -n -P --format=JobID,JobName,State,ExitCode,Elapsed,AllocCPUS`.

    A non-final answer (sacct lags the controller) is reported as UNKNOWN: not known yet.
    An id listed twice (the controller reused it) keeps its last, newest row.
    """
    states = {}
    for line in output.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 4 or not fields[0] or "." in fields[0]:
            continue
        job_id, name, raw, exit_text = fields[:4]
        status = map_slurm_state(raw)
        code, signal = parse_exit_code(exit_text)
        elapsed = _safe(parse_elapsed, fields[4]) if len(fields) > 4 else None
        cpus = _safe(int, fields[5]) if len(fields) > 5 else None
        if status not in FINAL:
            status = UNKNOWN
        word = raw.split(" ")[0].upper()
        reason = FAILURE_REASONS.get(word)
        if status == FAILED and reason is None:
            reason = (f"killed by signal {signal}" if signal else f"exit code {code}")
        if status == CANCELLED:
            reason = raw.strip()
        if signal and code == 0:
            code = 128 + signal
        # right after a job ends, accounting may not know its name yet and says
        # "allocation": that is no name at all, not another job's
        name = None if name in ("", "allocation") else name
        for task_id in expand_array_id(job_id):
            states[task_id] = JobState(task_id, status, raw, code, reason, elapsed, cpus, name)
    return states


def expand_array_id(job_id: str) -> list[str]:
    """A Slurm id as one id per array task: '123_[0-3,7%2]' (a pending array's tasks that
    have not started, as squeue without -r and sacct print them) → 123_0 … 123_3, 123_7;
    any other id ('123', '123_7') as it is. A malformed range stays as it is."""
    base, sep, rest = job_id.partition("_[")
    if not sep or not rest.endswith("]"):
        return [job_id]
    ids: list[str] = []
    try:
        for part in rest[:-1].split("%")[0].split(","):
            first, _, last = part.partition("-")
            ids += [f"{base}_{i}" for i in range(int(first), int(last or first) + 1)]
    except ValueError:
        return [job_id]
    return ids


def _safe(fn, value):
    try:
        return fn(value)
    except (TypeError, ValueError):
        return None
