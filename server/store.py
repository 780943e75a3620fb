"""The store: the one module that writes the database (seeds/001).

Every status change goes through `transition`, which is guarded by the lifecycle table
(a conditional UPDATE, so two workers can never both move a job) and records an Event.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, create_engine, select

from hpcbridge.clock import utcnow
from hpcbridge.lifecycle import ACTIVE, IN_SCHEDULER, JobStatus

from .models import App, Event, HPCState, Job, Quota, Worker
from .storeadmin import AdminRecords
from .storebatch import BatchRecords
from .storefiles import DEFAULT_MAX_LOG_BYTES, FileRecords
from .storenotify import NotificationRecords
from .storesessions import SessionRecords
from .storesweeps import SweepRecords

log = logging.getLogger("hpcbridge.store")


def private_file(path: str) -> None:
    """Only the service's account may read the database: 0600 (it holds every job).

    An existing database is never opened here: closing any descriptor of it drops every
    POSIX lock this process's SQLite connections hold on it, and then another process
    that closes its last connection checkpoints and deletes the WAL under them: their
    later commits are lost (seen with a middleware restarted beside a busy maintainer)."""
    if not path or path == ":memory:":
        return
    if not os.path.lexists(path):
        try:  # nobody has it open yet: creating it private is safe
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o600))
        except OSError:
            return  # SQLite reports what is wrong with the path
    for name in (path, path + "-wal", path + "-shm"):
        try:
            if not os.path.islink(name):
                os.chmod(name, 0o600)
        except FileNotFoundError:
            pass


def make_engine(url: str):
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})

        @sa_event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # WAL: readers never wait for the writer
            private_file(path)  # SQLite gives its -wal and -shm the database's mode
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
        return engine
    return create_engine(url, pool_pre_ping=True)


class Store(FileRecords, SweepRecords, SessionRecords, NotificationRecords, AdminRecords,
            BatchRecords):
    """The database. Logs and uploads: server/storefiles.py; sweeps, sessions and the
    notification outbox: server/storesweeps.py, storesessions.py, storenotify.py; operators'
    queries: server/storeadmin.py.

    transition_hooks: callables (job_id, status) run after each committed transition (metrics);
    event_hooks: callables (notice) run after each commit that wrote events or log text, with
    a notice dict (server/eventbus.py: `events` or `log`; the publisher on Redis pub/sub is
    installed by whoever holds Redis). A failing hook is logged, never raised."""

    transition_hooks: list = []  # class-wide: every Store of the process
    event_hooks: list = []  # class-wide too

    def __init__(self, url: str, create: bool = True,
                 max_log_bytes: int = DEFAULT_MAX_LOG_BYTES):
        self.url = url
        self.max_log_bytes = max_log_bytes
        self.engine = make_engine(url)
        if create:
            self.migrate()

    def migrate(self) -> None:
        """Bring the schema up to date (alembic; see server/migrations)."""
        from .migrations import upgrade
        upgrade(self.engine)

    def close(self) -> None:
        """Release the connection pool (at the service's stop)."""
        self.engine.dispose()

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # --- jobs -----------------------------------------------------------------------
    def create_job(self, **fields) -> Job:
        now = utcnow()
        job = Job(**fields, created_at=now, queued_at=now, updated_at=now, status=JobStatus.QUEUED.value)
        with self.session() as s:
            s.add(job)
            s.flush()  # the job row first: events reference it
            event = Event(job_id=job.id, time=now, type=JobStatus.QUEUED.value,
                          message=f"queued for {job.hpc}")
            s.add(event)
            s.commit()
        self.events_written([(event.id, job.id, job.user)])
        return job

    def create_job_once(self, user: str, key: str, fingerprint: str,
                        **fields) -> tuple[Job, bool]:
        """Create the job of `user`'s idempotency key, or return the one it already made:
        (job, created). Concurrent creators are decided by the unique (user, key) index."""
        try:
            return self.create_job(user=user, idempotency_key=key,
                                   idempotency_fingerprint=fingerprint, **fields), True
        except IntegrityError:
            existing = self.job_by_key(user, key)
            if existing is None:  # another constraint failed: not ours to hide
                raise
            return existing, False

    def job_by_key(self, user: str, key: str) -> Job | None:
        with self.session() as s:
            return s.exec(select(Job).where(Job.user == user,
                                            Job.idempotency_key == key)).first()

    def get_jobs(self, job_ids: Iterable[str]) -> dict[str, Job]:
        ids = list(set(job_ids))
        if not ids:
            return {}
        with self.session() as s:
            return {j.id: j for j in s.exec(select(Job).where(Job.id.in_(ids))).all()}

    def get_job(self, job_id: str, user: str | None = None) -> Job | None:
        with self.session() as s:
            job = s.get(Job, job_id)
        if job is None or (user is not None and job.user != user):
            return None
        return job

    def list_jobs(self, user: str | None = None, status: Sequence[str] | None = None,
                  app: str | None = None, hpc: str | None = None, limit: int = 50,
                  offset: int = 0, since: dt.datetime | None = None) -> tuple[list[Job], int]:
        query = select(Job)
        if user is not None:
            query = query.where(Job.user == user)
        if status:
            query = query.where(Job.status.in_(list(status)))
        if app:
            query = query.where(Job.app == app)
        if hpc:
            query = query.where(Job.hpc == hpc)
        if since is not None:
            query = query.where(Job.updated_at > since)
        with self.session() as s:
            total = s.exec(select(func.count()).select_from(query.subquery())).one()
            jobs = s.exec(query.order_by(Job.created_at.desc(), Job.id)
                          .offset(offset).limit(limit)).all()
        return list(jobs), total

    def active_jobs(self, hpc: str, statuses: Iterable[str] = ACTIVE) -> list[Job]:
        with self.session() as s:
            return list(s.exec(select(Job).where(Job.hpc == hpc, Job.status.in_(list(statuses)))
                               .order_by(Job.queued_at, Job.id)).all())

    def count_jobs(self, hpc: str, statuses: Iterable[str] = IN_SCHEDULER) -> int:
        with self.session() as s:
            return s.exec(select(func.count()).select_from(Job).where(
                Job.hpc == hpc, Job.status.in_(list(statuses)))).one()

    def transition(self, job_id: str, to: str, message: str, *, event_type: str | None = None,
                   expect: Iterable[str] | None = None, **fields: Any) -> bool:
        """Move a job to `to` if the lifecycle allows it from its current status (one
        guarded UPDATE, its event, a final status's notifications, then the hooks: the
        one rule, in storebatch.transition_many).

        Returns False (and writes nothing) when another worker moved it first.
        """
        return bool(self.transition_many(to, {job_id: (message, fields)}, expect=expect,
                                         event_type=event_type))

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Fields that are not a status change (cursors, scheduler figures)."""
        with self.session() as s:
            s.exec(update(Job).where(Job.id == job_id).values(**fields))
            s.commit()

    def request_cancel(self, job_id: str) -> Job | None:
        """Record a cancel request once (a conditional UPDATE: concurrent requests write
        one event) if the job is still active; returns the job as it is now."""
        now = utcnow()
        with self.session() as s:
            result = s.exec(update(Job).where(Job.id == job_id, Job.status.in_(list(ACTIVE)),
                                              Job.cancel_requested.is_(False))
                            .values(cancel_requested=True, updated_at=now))
            if result.rowcount == 1:
                event = Event(job_id=job_id, time=now, type="cancel_requested",
                              message="cancel requested")
                s.add(event)
                s.commit()
            else:
                s.rollback()
                event = None
        job = self.get_job(job_id)
        if event is not None and job is not None:
            self.events_written([(event.id, job_id, job.user)])
        return job

    # --- events ---------------------------------------------------------------------
    def add_event(self, job_id: str, type_: str, message: str, touch: bool = True) -> None:
        now = utcnow()
        with self.session() as s:
            event = Event(job_id=job_id, time=now, type=type_, message=message)
            s.add(event)
            if touch:
                s.exec(update(Job).where(Job.id == job_id)
                       .values(updated_at=now, message=message))
            s.commit()
        if self.event_hooks:
            self.events_written([(event.id, job_id, self.users_of([job_id]).get(job_id))])

    def users_of(self, job_ids: Iterable[str]) -> dict[str, str]:
        """Job id → user (for event notices: one indexed read, only with hooks installed)."""
        ids = list(set(job_ids))
        if not ids:
            return {}
        with self.session() as s:
            return dict(s.exec(select(Job.id, Job.user).where(Job.id.in_(ids))).all())

    def events_written(self, events: Sequence[tuple[int, str, str | None]]) -> None:
        """Tell the event hooks about committed events: (event id, job id, user) each."""
        if events and self.event_hooks:
            self.run_event_hooks({"kind": "events",
                                  "events": [list(e) for e in events]})

    def run_event_hooks(self, notice: dict) -> None:
        for hook in self.event_hooks:
            try:
                hook(notice)
            except Exception:  # a notice is a hint (streams also read on their own)
                log.exception("event hook %r failed", hook)

    def events(self, job_id: str) -> list[Event]:
        with self.session() as s:
            return list(s.exec(select(Event).where(Event.job_id == job_id)
                               .order_by(Event.id)).all())

    def last_event_id(self) -> int:
        with self.session() as s:
            return s.exec(select(func.max(Event.id))).one() or 0

    def events_with_jobs_after(self, after: int, limit: int, upto: int | None = None
                               ) -> list[tuple[int, str, str, dt.datetime, Job]]:
        """events_after, each row with its job as it is now (the event bus's one query
        per refresh, for every stream of the process)."""
        query = select(Event.id, Event.job_id, Job.user, Event.time, Job) \
            .join(Job, Job.id == Event.job_id).where(Event.id > after)
        if upto is not None:
            query = query.where(Event.id <= upto)
        with self.session() as s:
            return [tuple(row) for row in s.exec(query.order_by(Event.id).limit(limit)).all()]

    def events_after(self, after: int, limit: int,
                     upto: int | None = None) -> list[tuple[int, str, str, dt.datetime]]:
        """(event id, job id, job's user, time) of every user's events after `after` (up to
        `upto`), oldest first: the event stream needs the whole id sequence to see gaps."""
        query = select(Event.id, Event.job_id, Job.user, Event.time).join(Job, Job.id == Event.job_id) \
            .where(Event.id > after)
        if upto is not None:
            query = query.where(Event.id <= upto)
        with self.session() as s:
            return [tuple(row) for row in s.exec(query.order_by(Event.id).limit(limit)).all()]

    # --- apps ----------------------------------------------------------------
    def put_app(self, app: App) -> App:
        with self.session() as s:
            s.merge(app)
            s.commit()
        return app

    def get_app(self, app_id: str) -> App | None:
        with self.session() as s:
            return s.get(App, app_id)

    def list_apps(self) -> list[App]:
        with self.session() as s:
            return list(s.exec(select(App).order_by(App.id)).all())

    # --- quota ----------------------------------------------------------------------
    def quota(self, user: str, default_limit: float | None = None) -> Quota:
        with self.session() as s:
            quota = s.get(Quota, user)
        return quota or Quota(user=user, limit_seconds=default_limit, used_seconds=0)

    def _upsert(self, s: Session, model, key: dict[str, Any], insert: dict[str, Any],
                update_values: dict[str, Any]) -> None:
        """Create the row of `key` if missing, then update it: one atomic statement pair that
        concurrent writers cannot lose (a read-modify-write on PostgreSQL would)."""
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as insert_stmt
        else:
            from sqlalchemy.dialects.sqlite import insert as insert_stmt
        s.exec(insert_stmt(model).values(**key, **insert).on_conflict_do_nothing())
        if update_values:
            where = [getattr(model, k) == v for k, v in key.items()]
            s.exec(update(model).where(*where).values(**update_values))

    def set_quota(self, user: str, limit_seconds: float | None) -> Quota:
        with self.session() as s:
            self._upsert(s, Quota, {"user": user}, {"used_seconds": 0},
                         {"limit_seconds": limit_seconds})
            s.commit()
            return s.get(Quota, user)

    def charge(self, job_id: str, seconds: float, default_limit: float | None = None) -> bool:
        """Charge a finished job's compute time to its user, once."""
        with self.session() as s:
            result = s.exec(update(Job).where(Job.id == job_id, Job.charged_seconds.is_(None))
                            .values(charged_seconds=seconds))
            if result.rowcount != 1:
                s.rollback()
                return False
            user = s.get(Job, job_id).user
            self._upsert(s, Quota, {"user": user},
                         {"limit_seconds": default_limit, "used_seconds": 0},
                         {"used_seconds": func.coalesce(Quota.used_seconds, 0) + seconds})
            s.commit()
        return True

    # --- HPC state, workers -----------------------------------------------------------
    def hpc_state(self, hpc: str) -> HPCState:
        with self.session() as s:
            return s.get(HPCState, hpc) or HPCState(id=hpc)

    def set_hpc_state(self, hpc: str, **fields) -> None:
        with self.session() as s:
            self._upsert(s, HPCState, {"id": hpc}, {"draining": False}, fields)
            s.commit()

    def heartbeat(self, worker_id: str, host: str, pid: int, leases: list[str]) -> None:
        now = utcnow()
        with self.session() as s:
            self._upsert(s, Worker, {"id": worker_id},
                         {"host": host, "pid": pid, "started_at": now, "heartbeat_at": now,
                          "leases": []},
                         {"heartbeat_at": now, "leases": list(leases)})
            s.commit()

    def remove_worker(self, worker_id: str) -> None:
        with self.session() as s:
            worker = s.get(Worker, worker_id)
            if worker:
                s.delete(worker)
                s.commit()

    def workers(self) -> list[Worker]:
        with self.session() as s:
            return list(s.exec(select(Worker).order_by(Worker.started_at)).all())
