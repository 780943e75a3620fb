"""The store's records for the maintainer's batched paths: many jobs moved, updated or
noted in one transaction (a batch of 200 submissions is one commit, not a thousand), and a
sweep's array submission. A part of Store (server/store.py), the one database writer."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import update
from sqlmodel import select

from hpcbridge.clock import utcnow
from hpcbridge.lifecycle import FINAL, TIMESTAMPS, sources_of

from .models import Event, Job, Sweep

log = logging.getLogger("hpcbridge.store")


class BatchRecords:
    """Mixed into Store: needs self.session(), self.add_notifications and
    self.transition_hooks."""

    def transition_many(self, to: str, moves: Mapping[str, tuple[str, dict[str, Any]]], *,
                        expect: Iterable[str] | None = None,
                        event_type: str | None = None) -> list[str]:
        """Store.transition for many jobs in one transaction: `moves` is job id →
        (message, extra fields). Each job moves only if the lifecycle allows it from its
        current status (a conditional UPDATE each); the ids that moved."""
        allowed = sources_of(to)
        if expect is not None:
            allowed = allowed & frozenset(expect)
        now = utcnow()
        moved: list[str] = []
        with self.session() as s:
            for job_id, (message, fields) in moves.items():
                values = {"status": to, "updated_at": now, "message": message, **fields}
                if to in TIMESTAMPS:
                    values[TIMESTAMPS[to]] = now
                result = s.exec(update(Job).where(Job.id == job_id,
                                                  Job.status.in_(list(allowed)))
                                .values(**values))
                if result.rowcount != 1:
                    continue
                s.add(Event(job_id=job_id, time=now, type=event_type or to, message=message))
                if to in FINAL:
                    self.add_notifications(s, job_id, to, message)
                moved.append(job_id)
            s.commit()
        for job_id in moved:
            self._run_hooks(job_id, to)
        return moved

    def _run_hooks(self, job_id: str, to: str) -> None:
        for hook in self.transition_hooks:
            try:
                hook(job_id, to)
            except Exception:  # an observer never breaks a transition
                log.exception("transition hook %r failed", hook)

    def update_jobs(self, values: Mapping[str, dict[str, Any]]) -> None:
        """Store.update_job for many jobs (job id → fields), in one transaction."""
        if not values:
            return
        with self.session() as s:
            for job_id, fields in values.items():
                s.exec(update(Job).where(Job.id == job_id).values(**fields))
            s.commit()

    def add_events(self, events: Iterable[tuple[str, str, str]], touch: bool = False) -> None:
        """Store.add_event for many (job id, type, message), in one transaction."""
        now = utcnow()
        with self.session() as s:
            for job_id, type_, message in events:
                s.add(Event(job_id=job_id, time=now, type=type_, message=message))
                if touch:
                    s.exec(update(Job).where(Job.id == job_id)
                           .values(updated_at=now, message=message))
            s.commit()

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
