"""The store's records for the maintainer's batched paths: many jobs moved, updated or
noted in one transaction (a batch of 200 submissions is one commit, not a thousand), and a
sweep's array submission. A part of Store (server/store.py), the one database writer."""
from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import bindparam, func, update
from sqlmodel import select

from hpcbridge.clock import utcnow
from hpcbridge.lifecycle import FINAL, IN_SCHEDULER, TIMESTAMPS, JobStatus, sources_of

from .models import Event, Job, Sweep

log = logging.getLogger("hpcbridge.store")


class BatchRecords:
    """Mixed into Store: needs self.session(), self.add_notifications,
    self.transition_hooks, self.event_hooks, self.users_of and self.events_written."""

    def transition_many(self, to: str, moves: Mapping[str, tuple[str, dict[str, Any]]], *,
                        expect: Iterable[str] | None = None,
                        event_type: str | None = None) -> list[str]:
        """Store.transition for many jobs in one transaction: `moves` is job id →
        (message, extra fields). Each job moves only if the lifecycle allows it from its
        current status (a conditional UPDATE each: Core statements, compiled once); the
        ids that moved."""
        allowed = sources_of(to)
        if expect is not None:
            allowed = allowed & frozenset(expect)
        now = utcnow()
        moved: list[str] = []
        with self.session() as s:
            conn = s.connection()
            # in id order: on PostgreSQL two workers locking overlapping jobs in different
            # orders deadlock (tests/integration/store/test_postgres_concurrency.py)
            for job_id, (message, fields) in sorted(moves.items()):
                values = {"status": to, "updated_at": now, "message": message, **fields}
                if to in TIMESTAMPS:
                    values[TIMESTAMPS[to]] = now
                result = conn.execute(_guarded_update(tuple(sorted(values)), allowed),
                                      {"_id": job_id, **{f"v_{k}": v for k, v in values.items()}})
                if result.rowcount == 1:
                    moved.append(job_id)
            taken = set(moved)  # answered in the caller's order (admission's is fair)
            moved = [job_id for job_id in moves if job_id in taken]
            event_ids = self._insert_events(conn, [
                {"job_id": job_id, "time": now, "type": event_type or to,
                 "message": moves[job_id][0]} for job_id in moved])
            if to in FINAL:
                for job_id in moved:
                    self.add_notifications(s, job_id, to, moves[job_id][0])
            s.commit()
        self._notify_events(event_ids, moved)
        self._run_hooks(moved, to)
        return moved

    def _insert_events(self, conn, rows: list[dict]) -> list[int]:
        """Insert Event rows; their ids in row order when event hooks want them (RETURNING,
        SQLite >= 3.35 and PostgreSQL), else none (the plain executemany is cheaper)."""
        if not rows:
            return []
        table = Event.__table__
        if not self.event_hooks:
            conn.execute(table.insert(), rows)
            return []
        result = conn.execute(table.insert().returning(table.c.id,
                                                       sort_by_parameter_order=True), rows)
        return [row[0] for row in result]

    def _notify_events(self, event_ids: list[int], job_ids: list[str]) -> None:
        if event_ids:
            users = self.users_of(job_ids)
            self.events_written([(e, j, users.get(j)) for e, j in zip(event_ids, job_ids)])

    def _run_hooks(self, job_ids: list[str], to: str) -> None:
        """Each hook told of every moved job; one with a `many` method all at once (the
        metrics read the batch's jobs in one query, not one each)."""
        if not job_ids:
            return
        for hook in self.transition_hooks:
            try:
                many = getattr(hook, "many", None)
                if many is not None:
                    many(job_ids, to)
                else:
                    for job_id in job_ids:
                        hook(job_id, to)
            except Exception:  # an observer never breaks a transition
                log.exception("transition hook %r failed", hook)

    def update_jobs(self, values: Mapping[str, dict[str, Any]]) -> None:
        """Store.update_job for many jobs (job id → fields), in one transaction."""
        if not values:
            return
        with self.session() as s:
            conn = s.connection()
            for job_id, fields in sorted(values.items()):  # id order, as transition_many
                conn.execute(_guarded_update(tuple(sorted(fields)), None),
                             {"_id": job_id, **{f"v_{k}": v for k, v in fields.items()}})
            s.commit()

    def add_events(self, events: Iterable[tuple[str, str, str]], touch: bool = False) -> None:
        """Store.add_event for many (job id, type, message), in one transaction."""
        now = utcnow()
        rows = [{"job_id": job_id, "time": now, "type": type_, "message": message}
                for job_id, type_, message in events]
        if not rows:
            return
        with self.session() as s:
            conn = s.connection()
            event_ids = self._insert_events(conn, rows)
            if touch:
                for row in rows:
                    conn.execute(_guarded_update(("message", "updated_at"), None),
                                 {"_id": row["job_id"], "v_message": row["message"],
                                  "v_updated_at": now})
            s.commit()
        self._notify_events(event_ids, [row["job_id"] for row in rows])

    def admission_view(self, hpc: str) -> tuple[Counter, list]:
        """What admission needs, without loading whole jobs: (jobs in the scheduler per
        user, the queued jobs' (id, user, sweep_id) rows, oldest first)."""
        with self.session() as s:
            load = s.exec(select(Job.user, func.count()).where(
                Job.hpc == hpc, Job.status.in_(list(IN_SCHEDULER))).group_by(Job.user)).all()
            queued = s.exec(select(Job.id, Job.user, Job.sweep_id).where(
                Job.hpc == hpc, Job.status == JobStatus.QUEUED.value)
                .order_by(Job.queued_at, Job.id)).all()
        return Counter(dict(load)), list(queued)

    # --- sweeps as the engine sees them (get_sweep: storesweeps.SweepRecords) ---------
    def update_sweep(self, sweep_id: str, **fields: Any) -> None:
        with self.session() as s:
            s.exec(update(Sweep).where(Sweep.id == sweep_id)
                   .values(updated_at=utcnow(), **fields))
            s.commit()

    def sweep_elements(self, sweep_id: str, statuses: Iterable[str] | None = None) -> list[Job]:
        """The element jobs of a sweep, by index (only those in `statuses`, if given)."""
        query = select(Job).where(Job.sweep_id == sweep_id)
        if statuses is not None:
            query = query.where(Job.status.in_(list(statuses)))
        with self.session() as s:
            return list(s.exec(query.order_by(Job.sweep_index)).all())


@functools.lru_cache(maxsize=64)
def _guarded_update(columns: tuple[str, ...], allowed: frozenset | None):
    """UPDATE job SET <columns> WHERE id = :_id [AND status IN allowed], with bound
    parameters v_<column>: one statement per shape, compiled once, run per row."""
    table = Job.__table__
    where = [table.c.id == bindparam("_id")]
    if allowed is not None:
        where.append(table.c.status.in_(sorted(allowed)))
    return table.update().where(*where).values(
        {table.c[name]: bindparam(f"v_{name}") for name in columns})
