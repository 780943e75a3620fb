"""The store's records of interactive sessions: their lifecycle, events, activity and time charged against the session quota.
A part of Store (server/store.py), the one database writer.

Status changes are conditional UPDATEs (like Store.transition for jobs), each with a
SessionEvent in the same transaction; time is charged from `charged_until` forward and
added to Quota.session_used_seconds in one transaction, so no period is charged twice or
lost."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, or_, update
from sqlmodel import select

from hpcbridge.clock import aware, utcnow

from .models import Quota, ServiceSession, SessionEvent

STARTING, RUNNING, STOPPING, STOPPED = "starting", "running", "stopping", "stopped"
ACTIVE = (STARTING, RUNNING, STOPPING)
# where each status may be reached from
SOURCES = {RUNNING: (STARTING,), STOPPING: (STARTING, RUNNING), STOPPED: ACTIVE}


class SessionRecords:
    """Mixed into Store: needs self.session() and self._upsert()."""

    def create_session(self, **fields: Any) -> ServiceSession:
        now = utcnow()
        record = ServiceSession(**fields, status=STARTING, created_at=now, updated_at=now,
                                last_activity_at=now)
        with self.session() as s:
            s.add(record)
            s.flush()  # the row first: events reference it
            s.add(SessionEvent(session_id=record.id, time=now, type=STARTING,
                               message=f"starting {record.app} on {record.hpc}"))
            s.commit()
        return record

    def get_session(self, session_id: str, user: str | None = None) -> ServiceSession | None:
        with self.session() as s:
            record = s.get(ServiceSession, session_id)
        if record is None or (user is not None and record.user != user):
            return None
        return record

    def list_sessions(self, user: str | None = None, limit: int = 200) -> list[ServiceSession]:
        """Newest first: every active session, then the most recent stopped ones."""
        query = select(ServiceSession)
        if user is not None:
            query = query.where(ServiceSession.user == user)
        with self.session() as s:
            return list(s.exec(query.order_by(ServiceSession.created_at.desc(),
                                              ServiceSession.id).limit(limit)).all())

    def active_sessions(self, hpc: str) -> list[ServiceSession]:
        with self.session() as s:
            return list(s.exec(select(ServiceSession).where(
                ServiceSession.hpc == hpc, ServiceSession.status.in_(ACTIVE))
                .order_by(ServiceSession.created_at)).all())

    def count_active_sessions(self, user: str) -> int:
        with self.session() as s:
            return s.exec(select(func.count()).select_from(ServiceSession).where(
                ServiceSession.user == user, ServiceSession.status.in_(ACTIVE))).one()

    def session_events(self, session_id: str) -> list[SessionEvent]:
        with self.session() as s:
            return list(s.exec(select(SessionEvent).where(SessionEvent.session_id == session_id)
                               .order_by(SessionEvent.id)).all())

    def add_session_event(self, session_id: str, type_: str, message: str,
                          touch: bool = True) -> None:
        now = utcnow()
        with self.session() as s:
            s.add(SessionEvent(session_id=session_id, time=now, type=type_, message=message))
            if touch:
                s.exec(update(ServiceSession).where(ServiceSession.id == session_id)
                       .values(updated_at=now, message=message))
            s.commit()

    def update_session(self, session_id: str, **fields: Any) -> None:
        """Fields that are not a status change (scheduler id, cursors)."""
        with self.session() as s:
            s.exec(update(ServiceSession).where(ServiceSession.id == session_id)
                   .values(**fields))
            s.commit()

    def session_transition(self, session_id: str, to: str, message: str, *,
                           expect: Iterable[str] | None = None, event_type: str | None = None,
                           **fields: Any) -> bool:
        """Move a session to `to` if it is in one of the statuses `to` may follow; False
        (nothing written) when someone moved it first. `stopped` charges the time up to now
        in the same transaction."""
        allowed = set(SOURCES[to]) & set(expect if expect is not None else SOURCES[to])
        now = utcnow()
        values = {"status": to, "updated_at": now, "message": message, **fields}
        if to == RUNNING:
            values.setdefault("running_at", now)
        if to == STOPPED:
            values["stopped_at"] = now
        with self.session() as s:
            record = s.get(ServiceSession, session_id)
            if record is None or record.status not in allowed:
                return False
            charged_until = record.charged_until
            result = s.exec(update(ServiceSession).where(
                ServiceSession.id == session_id, ServiceSession.status == record.status)
                .values(**values))
            if result.rowcount != 1:
                s.rollback()
                return False
            if to == STOPPED and charged_until is not None:
                self._charge_in(s, record.id, record.user, charged_until, now)
            s.add(SessionEvent(session_id=session_id, time=now, type=event_type or to,
                               message=message))
            s.commit()
        return True

    def request_session_stop(self, session_id: str, message: str) -> ServiceSession | None:
        """Record a stop request once (concurrent requests write one event): starting or
        running → stopping; the maintainer ends it. The session as it is now."""
        now = utcnow()
        with self.session() as s:
            result = s.exec(update(ServiceSession).where(
                ServiceSession.id == session_id, ServiceSession.status.in_((STARTING, RUNNING)))
                .values(stop_requested=True, status=STOPPING, updated_at=now, message=message))
            if result.rowcount == 1:
                s.add(SessionEvent(session_id=session_id, time=now, type=STOPPING,
                                   message=message))
                s.commit()
            else:
                s.rollback()
        return self.get_session(session_id)

    def touch_session(self, session_id: str, at: dt.datetime | None = None) -> None:
        """Activity: last_activity_at moves forward only (never back)."""
        at = at or utcnow()
        with self.session() as s:
            s.exec(update(ServiceSession).where(
                ServiceSession.id == session_id,
                or_(ServiceSession.last_activity_at.is_(None),
                    ServiceSession.last_activity_at < at)).values(last_activity_at=at))
            s.commit()

    # --- time and quota ---------------------------------------------------------------
    def start_charging(self, session_id: str, at: dt.datetime) -> bool:
        """The session's job started at `at`: its time counts from there (once)."""
        with self.session() as s:
            result = s.exec(update(ServiceSession).where(
                ServiceSession.id == session_id, ServiceSession.charged_until.is_(None))
                .values(charged_until=at))
            s.commit()
        return result.rowcount == 1

    def charge_session(self, session_id: str, until: dt.datetime | None = None) -> float:
        """Charge the time from charged_until to `until` (now); the seconds charged."""
        until = until or utcnow()
        with self.session() as s:
            record = s.get(ServiceSession, session_id)
            if record is None or record.charged_until is None:
                return 0.0
            seconds = self._charge_in(s, record.id, record.user, record.charged_until, until)
            s.commit()
        return seconds

    def _charge_in(self, s, session_id: str, user: str, since: dt.datetime,
                   until: dt.datetime) -> float:
        """Move charged_until from `since` to `until` (conditional: a concurrent charge of
        the same period wins alone) and add the seconds to the user's session time."""
        seconds = (aware(until) - aware(since)).total_seconds()
        if seconds <= 0:
            return 0.0
        result = s.exec(update(ServiceSession).where(
            ServiceSession.id == session_id, ServiceSession.charged_until == since)
            .values(charged_until=until,
                    charged_seconds=ServiceSession.charged_seconds + seconds))
        if result.rowcount != 1:
            return 0.0
        self._upsert(s, Quota, {"user": user}, {"used_seconds": 0},
                     {"session_used_seconds": func.coalesce(Quota.session_used_seconds, 0)
                      + seconds})
        return seconds

    def session_quota(self, user: str, default_limit: float | None) -> tuple[float | None, float]:
        """(limit seconds or None, used seconds): a user without their own limit has the
        site's default."""
        with self.session() as s:
            quota = s.get(Quota, user)
        if quota is None:
            return default_limit, 0.0
        limit = quota.session_limit_seconds
        return (default_limit if limit is None else limit), quota.session_used_seconds or 0.0

    def set_session_quota(self, user: str, limit_seconds: float | None) -> None:
        with self.session() as s:
            self._upsert(s, Quota, {"user": user}, {"used_seconds": 0},
                         {"session_limit_seconds": limit_seconds})
            s.commit()
