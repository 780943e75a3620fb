"""The store's records of the notification outbox: messages about a job's end, claimed, sent and retried.
A part of Store (server/store.py), the one database writer.

Delivery is at least once: a row is claimed with a lease (its next_attempt_at moved forward
and its attempts counted by one conditional UPDATE, so two workers never hold it at once); a
worker that dies mid-send leaves it to be claimed again when the lease ends."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import update
from sqlmodel import select

from hpcbridge.clock import utcnow

from .models import Event, Job, Notification

CHANNELS = ("webhook", "email")


class NotificationRecords:
    """Mixed into Store: needs self.session()."""

    def add_notifications(self, s, job_id: str, status: str, message: str) -> None:
        """Called by Store.transition inside its transaction when a job ends: queue the
        messages its owner asked for (Job.notify) as outbox rows."""
        notify = s.exec(select(Job.notify).where(Job.id == job_id)).first() or {}
        now = utcnow()
        for channel in CHANNELS:
            if notify.get(channel):
                s.add(Notification(job_id=job_id, channel=channel, target=notify[channel],
                                   next_attempt_at=now, created_at=now))

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

    def notifications(self, job_id: str) -> list[Notification]:
        with self.session() as s:
            return list(s.exec(select(Notification).where(Notification.job_id == job_id)
                               .order_by(Notification.id)).all())
