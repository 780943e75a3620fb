"""Live log tails: only the new bytes of each running job, one SFTP round per HPC.

A log the job made unreadable (mode 000, a named pipe, a device) is the job's own affair:
it gets one "log_unreadable" event, is skipped with a growing back-off, and never stops the
tail of another log or another job."""
from __future__ import annotations

import datetime as dt
import threading
import time

from hpcbridge.clock import aware, utcnow
from hpcbridge.connectors.errors import JobFileError
from hpcbridge.connectors.layout import LOG_FILES, WorkDir

UNREADABLE_EVENT = "log_unreadable"


def due_for_tail(job, now: dt.datetime, tuning) -> bool:
    """A log silent for Maintainer.quiet_log_after_seconds is read only every
    quiet_log_every_seconds instead of every cycle (the HPC is shared)."""
    changed = aware(job.log_changed_at) or aware(job.started_at) or now
    checked = aware(job.log_checked_at)
    if now - changed < dt.timedelta(seconds=tuning.quiet_log_after_seconds) or checked is None:
        return True
    return now - checked >= dt.timedelta(seconds=tuning.quiet_log_every_seconds)


class Unreadable:
    """The (job, stream) logs that could not be read, each skipped until its back-off
    (doubling from `first` up to `longest` seconds) has passed. Per process: another
    worker taking the HPC over tries once and learns the same."""

    def __init__(self, first: float = 5.0, longest: float = 300.0):
        self.first, self.longest = first, longest
        self._next: dict[tuple[str, str], tuple[float, float]] = {}  # key → (due, wait)
        self._lock = threading.Lock()

    def skip(self, key) -> bool:
        with self._lock:
            due = self._next.get(key)
        return due is not None and time.monotonic() < due[0]

    def failed(self, key) -> bool:
        """Record a failed read; True the first time (in this process)."""
        with self._lock:
            _, wait = self._next.get(key, (0.0, self.first / 2))
            first = key not in self._next
            wait = min(self.longest, wait * 2)
            self._next[key] = (time.monotonic() + wait, wait)
            return first

    def readable(self, key) -> None:
        with self._lock:
            self._next.pop(key, None)


UNREADABLE = Unreadable()


def _report(rt, job_id: str, stream: str, exc: JobFileError) -> None:
    """One event per unreadable log, also across worker restarts (the store remembers)."""
    if not UNREADABLE.failed((job_id, stream)):
        return
    tag = f"the {stream} log cannot be read"
    if any(e.type == UNREADABLE_EVENT and e.message.startswith(tag)
           for e in rt.store.events(job_id)):
        return
    rt.store.add_event(job_id, UNREADABLE_EVENT,
                       f"{tag}: {exc.why}; it is skipped and tried again later", touch=False)


def tail_logs(rt, handler, jobs, until_end: bool = False, run=None) -> int:
    """Append the new stdout/stderr bytes of `jobs` to the store; bytes read.

    At most Site.max_log_bytes_per_cycle per log; `until_end` (a job that ended) reads on in
    rounds until every log is read (at most Maintainer.final_log_rounds) and tries even a
    log in back-off once. `run` runs a coroutine on the io loop (default rt.run)."""
    run = run or rt.run
    max_bytes = rt.site.max_log_bytes_per_cycle
    jobs = [j for j in jobs if j.remote_dir]
    total = 0
    cursors = {(j.id, s): getattr(j, f"{s}_size") for j in jobs for s in LOG_FILES}
    pending = [k for k in cursors if until_end or not UNREADABLE.skip(k)]
    workdirs = {j.id: WorkDir(j.remote_dir) for j in jobs}
    for _ in range(rt.tuning.final_log_rounds if until_end else 1):
        if not pending:
            break
        requests = [(workdirs[i].log(s), cursors[(i, s)], max_bytes) for i, s in pending]
        chunks = run(handler.transport.read_ranges(requests))
        still = []
        for key, data in zip(pending, chunks):
            if isinstance(data, JobFileError):
                _report(rt, key[0], key[1], data)
                continue
            UNREADABLE.readable(key)
            if data:
                rt.store.append_log(key[0], key[1], cursors[key], data)
                cursors[key] += len(data)
                total += len(data)
                if len(data) >= max_bytes:
                    still.append(key)
        pending = still
    now = utcnow()
    for job in jobs:
        rt.store.update_job(job.id, log_checked_at=now)
    return total
