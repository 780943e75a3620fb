"""Live log tails: only the new bytes of each running job, one SFTP round per HPC."""
from __future__ import annotations

import datetime as dt

from hpcbridge.server.models import utcnow

QUIET_AFTER = dt.timedelta(seconds=60)  # a log silent this long is read less often
QUIET_EVERY = dt.timedelta(seconds=30)


def due_for_tail(job, now: dt.datetime) -> bool:
    """Quiet logs are read every QUIET_EVERY instead of every cycle (the HPC is shared)."""
    changed = _aware(job.log_changed_at) or _aware(job.started_at) or now
    checked = _aware(job.log_checked_at)
    if now - changed < QUIET_AFTER or checked is None:
        return True
    return now - checked >= QUIET_EVERY


def tail_logs(runtime, handler, jobs, max_bytes: int, until_end: bool = False) -> int:
    """Append new stdout/stderr bytes of `jobs` to the store; bytes read."""
    jobs = [j for j in jobs if j.remote_dir]
    total = 0
    cursors = {(j.id, s): (j.stdout_size if s == "stdout" else j.stderr_size)
               for j in jobs for s in ("stdout", "stderr")}
    pending = list(cursors)
    by_id = {j.id: j for j in jobs}
    for _ in range(1000 if until_end else 1):
        if not pending:
            break
        requests = [(f"{by_id[i].remote_dir}/{s}.log", cursors[(i, s)], max_bytes)
                    for i, s in pending]
        chunks = runtime.run(handler.transport.read_ranges(requests))
        still = []
        for (job_id, stream), data in zip(pending, chunks):
            if data:
                runtime.store.append_log(job_id, stream, cursors[(job_id, stream)], data)
                cursors[(job_id, stream)] += len(data)
                total += len(data)
                if len(data) >= max_bytes:
                    still.append((job_id, stream))
        pending = still
    now = utcnow()
    for job in jobs:
        runtime.store.update_job(job.id, log_checked_at=now)
    return total


def _aware(value):
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value
