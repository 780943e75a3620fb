"""Pure decisions of the job state machine: what a scheduler answer means for a job."""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hpcbridge.connectors.spec import JobSpec, job_name
from hpcbridge.connectors.state import (
    CANCELLED,
    FAILED,
    RUNNING,
    SUBMITTED,
    SUCCEEDED,
    UNKNOWN,
    JobState,
)

RESULT_DIR = "result"
DATA_DIR = "data"


@dataclass(frozen=True)
class Decision:
    status: str | None  # new status, or None to leave the job as it is
    message: str = ""
    fields: dict | None = None


def on_scheduler_state(current: str, state: JobState, scheduler: str) -> Decision:
    """What a status_many answer means for a job that is `submitted` or `running`."""
    if state.status == UNKNOWN:
        return Decision(None)
    if state.status == SUBMITTED:
        return Decision(None)
    if state.status == RUNNING:
        if current == "submitted":
            return Decision("running", f"running on {scheduler} ({state.raw_state})")
        return Decision(None)
    outcome = {SUCCEEDED: "succeeded", FAILED: "failed", CANCELLED: "cancelled"}[state.status]
    if outcome == "succeeded":
        message = f"{scheduler} job completed; collecting results"
    elif outcome == "cancelled":
        message = f"{scheduler} job cancelled; collecting logs"
    else:
        message = f"{scheduler} job failed ({state.reason or state.raw_state}); collecting logs"
    return Decision("finishing", message, {
        "outcome": outcome, "exit_code": state.exit_code, "scheduler_state": state.raw_state,
        "elapsed_seconds": state.elapsed_seconds, "cpus": state.cpus})


def final_message(outcome: str, exit_code: int | None, scheduler_state: str | None,
                  reason: str | None = None) -> str:
    if outcome == "succeeded":
        return "succeeded"
    if outcome == "cancelled":
        return "cancelled"
    state = (scheduler_state or "").split(" ")[0]
    if state and state not in ("FAILED", "COMPLETED"):
        return f"failed: {state}" + (f" (exit code {exit_code})" if exit_code else "")
    return f"failed with exit code {exit_code}" if exit_code is not None else \
        f"failed: {reason or state or 'unknown reason'}"


def fair_pick(queued: Sequence, in_scheduler: Iterable, n: int) -> list:
    """Up to n of the `queued` jobs (oldest first), in the order they should be admitted.

    Each pick goes to the user with the fewest jobs in the scheduler, counting the ones
    picked before it; ties go to the user whose oldest queued job has waited longest. A
    user who queued many jobs first cannot keep the others out when the slots free up
    one at a time: the slot goes to whoever holds fewest.
    """
    if n <= 0 or not queued:
        return []
    load = Counter(job.user for job in in_scheduler)
    lines: dict[str, list] = {}
    for job in queued:
        lines.setdefault(job.user, []).append(job)
    rank = {job.id: i for i, job in enumerate(queued)}
    heads = {user: 0 for user in lines}
    picked = []
    while len(picked) < n and heads:
        user = min(heads, key=lambda u: (load[u], rank[lines[u][heads[u]].id]))
        picked.append(lines[user][heads[user]])
        load[user] += 1
        heads[user] += 1
        if heads[user] == len(lines[user]):
            del heads[user]
    return picked


def safe_user_dir(user: str) -> str:
    """A user name as one safe path component (hub names may hold @, spaces…).

    Every other character becomes +<hex>, a leading dot too (no hidden or '..' folders),
    so two names never share a folder."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", lambda m: f"+{ord(m.group()):x}", user)
    return re.sub(r"^\.", "+2e", safe) or "_"


def remote_workdir(work_root: str, user: str, job_id: str) -> str:
    return f"{work_root.rstrip('/')}/{safe_user_dir(user)}/{job_id}"


def job_environment(job_id: str, workdir: str, params: dict, has_data: bool) -> dict[str, str]:
    """Parameters reach the job as environment variables (quoted when rendered)."""
    env = {
        "HPCBRIDGE_JOB_ID": job_id,
        "HPCBRIDGE_WORKDIR": workdir,
        "HPCBRIDGE_RESULT_DIR": f"{workdir}/{RESULT_DIR}",
        "HPCBRIDGE_JOB_JSON": f"{workdir}/job.json",
        "HPCBRIDGE_DATA_DIR": f"{workdir}/{DATA_DIR}" if has_data else "",
    }
    for name, value in params.items():
        env[f"param_{name}"] = json.dumps(value) if isinstance(value, bool) else str(value)
    return env


def build_spec(job, command: str, workdir: str, hpc, has_data: bool) -> JobSpec:
    resources = job.resources or {}
    command = f"mkdir -p {RESULT_DIR}\n{command}"
    return JobSpec(
        name=job_name(job.id), workdir=workdir, command=command,
        environment=job_environment(job.id, workdir, job.params or {}, has_data),
        partition=resources.get("partition") or hpc.default_partition,
        time_minutes=int(resources.get("time") or 10), cpus=int(resources.get("cpus") or 1),
        memory_mb=resources.get("memory"), gpus=int(resources.get("gpus") or 0))


def job_json(job) -> bytes:
    return json.dumps({"id": job.id, "user": job.user, "app": job.app, "hpc": job.hpc,
                       "params": job.params, "resources": job.resources}, indent=2).encode()
