"""The store's queries and repairs for operators (issue #25): stuck jobs, usage per user,
requeueing a job stuck in staging or finishing.
A part of Store (server/store.py), the one database writer."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import case, func
from sqlmodel import select

from hpcbridge.clock import aware, utcnow
from hpcbridge.lifecycle import ACTIVE, TIMESTAMPS, JobStatus

from .models import Event, Job, Quota

# statuses a job can be requeued from: the ones a worker moves on by itself (a task)
REQUEUEABLE = frozenset({JobStatus.STAGING, JobStatus.FINISHING})


@dataclass
class StuckRecord:
    job: Job
    status_since: dt.datetime
    last_event: Event | None


@dataclass
class UsageRecord:
    user: str
    jobs: dict[str, int]
    charged_seconds: float
    quota: Quota


def _status_since():
    """When a job entered its current status: the status's own timestamp column; finishing
    has none, so its transition event (type "finishing"), else the last update."""
    finishing_at = select(func.max(Event.time)).where(
        Event.job_id == Job.id, Event.type == JobStatus.FINISHING.value).scalar_subquery()
    whens = [(Job.status == status.value, func.coalesce(getattr(Job, column), Job.updated_at))
             for status, column in TIMESTAMPS.items() if status in ACTIVE]
    return case(*whens, else_=func.coalesce(finishing_at, Job.updated_at))


class AdminRecords:
    """Mixed into Store: needs self.session()."""

    def stuck_jobs(self, older_than: float, hpc: str | None = None, limit: int = 100,
                   now: dt.datetime | None = None) -> list[StuckRecord]:
        """Active jobs that entered their status more than `older_than` s ago, longest
        stuck first, each with its last event."""
        cutoff = (now or utcnow()) - dt.timedelta(seconds=older_than)
        since = _status_since().label("since")
        query = select(Job, since).where(Job.status.in_([s.value for s in ACTIVE]),
                                         since < cutoff)
        if hpc:
            query = query.where(Job.hpc == hpc)
        with self.session() as s:
            rows = s.exec(query.order_by(since, Job.id).limit(limit)).all()
            last = self.last_events(s, [job.id for job, _ in rows])
        return [StuckRecord(job, aware(at), last.get(job.id)) for job, at in rows]

    @staticmethod
    def last_events(s, job_ids: list[str]) -> dict[str, Event]:
        """The newest event of each job (one query)."""
        if not job_ids:
            return {}
        newest = select(func.max(Event.id)).where(Event.job_id.in_(job_ids)) \
            .group_by(Event.job_id)
        return {e.job_id: e for e in s.exec(select(Event).where(Event.id.in_(newest))).all()}

    def usage(self, default_limit: float | None = None) -> list[UsageRecord]:
        """Every user with jobs or a quota: jobs by status, CPU-seconds charged, quota."""
        with self.session() as s:
            counts = s.exec(select(Job.user, Job.status, func.count(),
                                   func.coalesce(func.sum(Job.charged_seconds), 0))
                            .group_by(Job.user, Job.status)).all()
            quotas = {q.user: q for q in s.exec(select(Quota)).all()}
        users: dict[str, UsageRecord] = {}
        for name in sorted({row[0] for row in counts} | set(quotas)):
            quota = quotas.get(name) or Quota(user=name, limit_seconds=default_limit)
            users[name] = UsageRecord(name, {}, 0.0, quota)
        for name, status, n, charged in counts:
            users[name].jobs[status] = n
            users[name].charged_seconds += float(charged or 0)
        return list(users.values())

    def mark_requeued(self, job_id: str, admin: str) -> Job | None:
        """Record an operator's requeue of a job still in staging or finishing (its status
        is kept: the worker that takes the task moves it on); None if it moved on."""
        now = utcnow()
        with self.session() as s:
            job = s.get(Job, job_id)
            if job is None or job.status not in REQUEUEABLE:
                return None
            event = Event(job_id=job_id, time=now, type="requeued",
                          message=f"offered to the workers again by {admin} ({job.status})")
            s.add(event)
            s.commit()
        self.events_written([(event.id, job_id, job.user)])  # pushed to the streams
        return job
