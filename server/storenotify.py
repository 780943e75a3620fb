"""The store's records of the notification outbox: messages about a job's or a sweep's end,
claimed, sent and retried. A part of Store (server/store.py), the one database writer.

A sweep is told once, when its last element becomes final, never per element: the
transaction that makes an element final locks its sweep's row, looks whether any element
is still active and, if none is, sets Sweep.ended_at and writes the sweep's rows. On
PostgreSQL two transactions ending a sweep's last two elements take turns on that lock, and
the second one's check (a new statement: READ COMMITTED's new snapshot) sees the first's
element final: one of them ends the sweep, never both, never neither
(tests/integration/store/test_sweep_notify_postgres.py). SQLite has one writer at a time.

Delivery is at least once: a row is claimed with a lease (its next_attempt_at moved forward
and its attempts counted by one conditional UPDATE, so two workers never hold it at once); a
worker that dies mid-send leaves it to be claimed again when the lease ends."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import event as sa_event
from sqlalchemy import update
from sqlmodel import select

from hpcbridge.clock import utcnow
from hpcbridge.lifecycle import ACTIVE

from .models import Event, Job, Notification, Sweep

CHANNELS = ("webhook", "email")
_ENDED_KEY = "hpcbridge_jobs_ended"  # Session.info: the jobs ended in its transaction


class NotificationRecords:
    """Mixed into Store: needs self.session()."""

    def add_notifications(self, s, job_id: str, status: str, message: str) -> None:
        """Called by Store.transition(_many) inside its transaction for each job it ended:
        jobs_ended runs for all of them at once just before that transaction commits, so a
        batch ending elements of several sweeps locks them in id order like any other."""
        pending = s.info.setdefault(_ENDED_KEY, [])
        if not pending:
            sa_event.listen(s, "before_commit", self._before_commit, once=True)
        pending.append(job_id)

    def _before_commit(self, s) -> None:
        self.jobs_ended(s, s.info.pop(_ENDED_KEY, []))

    def jobs_ended(self, s, job_ids: Sequence[str]) -> list[str]:
        """Inside the transaction that made `job_ids` final: queue the messages their
        owners asked for (Job.notify; a sweep's elements never notify on their own), and end
        every sweep whose last active element was among them (Sweep.ended_at, the sweep's
        own messages). The ids of the sweeps ended."""
        if not job_ids:
            return []
        now = utcnow()
        ended_by: dict[str, str] = {}  # sweep id -> the (lowest) element id that ended
        for job_id, notify, sweep_id in sorted(s.exec(
                select(Job.id, Job.notify, Job.sweep_id).where(Job.id.in_(list(job_ids))))):
            if sweep_id is not None:
                ended_by.setdefault(sweep_id, job_id)
            else:
                self._outbox(s, notify, now, job_id=job_id)
        # in id order: two transactions ending elements of the same sweeps lock them in
        # the same order (no deadlock)
        return [sweep_id for sweep_id in sorted(ended_by)
                if self._end_sweep(s, sweep_id, ended_by[sweep_id], now)]

    def _end_sweep(self, s, sweep_id: str, job_id: str, now: dt.datetime) -> bool:
        row = s.exec(select(Sweep.ended_at, Sweep.notify).where(Sweep.id == sweep_id)
                     .with_for_update()).first()  # SQLite: left out (one writer)
        if row is None or row[0] is not None:
            return False
        active = s.exec(select(Job.id).where(
            Job.sweep_id == sweep_id, Job.status.in_(sorted(str(a) for a in ACTIVE)))
            .limit(1)).first()
        if active is not None:
            return False
        s.exec(update(Sweep).where(Sweep.id == sweep_id, Sweep.ended_at.is_(None))
               .values(ended_at=now, updated_at=now))
        self._outbox(s, row[1], now, job_id=job_id, sweep_id=sweep_id)
        return True

    @staticmethod
    def _outbox(s, notify: dict | None, now: dt.datetime, **about) -> None:
        for channel in CHANNELS:
            if (notify or {}).get(channel):
                s.add(Notification(channel=channel, target=notify[channel],
                                   next_attempt_at=now, created_at=now, **about))

    def claim_notifications(self, limit: int, lease_seconds: float,
                            now: dt.datetime | None = None) -> list[tuple[Notification, Job]]:
        """Up to `limit` due pending rows, each now held by the caller for `lease_seconds`
        (attempts already counted), with their jobs. A row another worker claimed between
        the read and the UPDATE is skipped: the UPDATE's condition no longer holds."""
        now = now or utcnow()
        lease_end = now + dt.timedelta(seconds=lease_seconds)
        claimed = []
        with self.session() as s:
            due = s.exec(select(Notification.id, Notification.attempts)
                         .where(Notification.status == "pending",
                                Notification.next_attempt_at <= now)
                         .order_by(Notification.next_attempt_at, Notification.id)
                         .limit(limit)).all()
            for note_id, attempts in due:
                result = s.exec(update(Notification).where(
                    Notification.id == note_id, Notification.status == "pending",
                    Notification.attempts == attempts, Notification.next_attempt_at <= now)
                    .values(attempts=attempts + 1, next_attempt_at=lease_end))
                if result.rowcount == 1:
                    claimed.append(note_id)
            s.commit()
            rows = s.exec(select(Notification, Job).join(Job, Job.id == Notification.job_id)
                          .where(Notification.id.in_(claimed))
                          .order_by(Notification.id)).all() if claimed else []
        return [(note, job) for note, job in rows]

    def _settle(self, note: Notification, values: dict, event: tuple[str, str] | None) -> bool:
        """Write the outcome of the attempt `note` was claimed for, unless its lease was lost
        (another worker claimed it since: attempts moved on)."""
        added = None
        with self.session() as s:
            result = s.exec(update(Notification).where(
                Notification.id == note.id, Notification.status == "pending",
                Notification.attempts == note.attempts).values(**values))
            if result.rowcount != 1:
                s.rollback()
                return False
            if event is not None:
                added = Event(job_id=note.job_id, time=utcnow(), type=event[0],
                              message=event[1])
                s.add(added)
            s.commit()
        if added is not None:  # pushed to the streams
            self.events_written([(added.id, note.job_id, None)])
        return True

    def notification_sent(self, note: Notification, message: str) -> bool:
        return self._settle(note, {"status": "sent", "sent_at": utcnow(), "last_error": None},
                            ("notified", message))

    def notification_retry(self, note: Notification, delay_seconds: float, error: str) -> bool:
        return self._settle(note, {"next_attempt_at": utcnow() + dt.timedelta(
            seconds=delay_seconds), "last_error": error[:2000]}, None)

    def notification_failed(self, note: Notification, message: str, error: str) -> bool:
        """Give up: the row is `failed` and the job gets an event saying why."""
        return self._settle(note, {"status": "failed", "last_error": error[:2000]},
                            ("notification_failed", message))

    def notifications(self, job_id: str | None = None,
                      sweep_id: str | None = None) -> list[Notification]:
        """A job's outbox rows (a sweep's end included, if that job ended it), or a
        sweep's."""
        query = select(Notification)
        if job_id is not None:
            query = query.where(Notification.job_id == job_id)
        if sweep_id is not None:
            query = query.where(Notification.sweep_id == sweep_id)
        with self.session() as s:
            return list(s.exec(query.order_by(Notification.id)).all())
