"""Live log tails: only the new bytes of each running job, one SFTP round per HPC."""
from __future__ import annotations

import datetime as dt

from hpcbridge.clock import aware, utcnow
from hpcbridge.connectors.layout import LOG_FILES, WorkDir


def due_for_tail(job, now: dt.datetime, tuning) -> bool:
    """A log silent for Maintainer.quiet_log_after_seconds is read only every
    quiet_log_every_seconds instead of every cycle (the HPC is shared)."""
    changed = aware(job.log_changed_at) or aware(job.started_at) or now
    checked = aware(job.log_checked_at)
    if now - changed < dt.timedelta(seconds=tuning.quiet_log_after_seconds) or checked is None:
        return True
    return now - checked >= dt.timedelta(seconds=tuning.quiet_log_every_seconds)


def tail_logs(rt, handler, jobs, until_end: bool = False) -> int:
    """Append the new stdout/stderr bytes of `jobs` to the store; bytes read.

    At most Site.max_log_bytes_per_cycle per log; `until_end` (a job that ended) reads on in
    rounds until every log is read (at most Maintainer.final_log_rounds)."""
    max_bytes = rt.site.max_log_bytes_per_cycle
    jobs = [j for j in jobs if j.remote_dir]
    total = 0
    cursors = {(j.id, s): getattr(j, f"{s}_size") for j in jobs for s in LOG_FILES}
    pending = list(cursors)
    workdirs = {j.id: WorkDir(j.remote_dir) for j in jobs}
    for _ in range(rt.tuning.final_log_rounds if until_end else 1):
        if not pending:
            break
        requests = [(workdirs[i].log(s), cursors[(i, s)], max_bytes) for i, s in pending]
        chunks = rt.run(handler.transport.read_ranges(requests))
        still = []
        for (job_id, stream), data in zip(pending, chunks):
            if data:
                rt.store.append_log(job_id, stream, cursors[(job_id, stream)], data)
                cursors[(job_id, stream)] += len(data)
                total += len(data)
                if len(data) >= max_bytes:
                    still.append((job_id, stream))
        pending = still
    now = utcnow()
    for job in jobs:
        rt.store.update_job(job.id, log_checked_at=now)
    return total
