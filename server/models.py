"""Database tables (sqlmodel). Written only by store.py."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary
from sqlmodel import Field, SQLModel

from hpcbridge.clock import aware, utcnow
from hpcbridge.lifecycle import JobStatus

__all__ = ["App", "Event", "HPCState", "Job", "LogChunk", "Quota", "Upload", "Worker",
           "new_id"]


def new_id() -> str:
    return uuid.uuid4().hex


class Job(SQLModel, table=True):
    """One user's job: the JobInfo fields of seeds/003 plus the maintainer's cursors."""

    __table_args__ = (Index("ix_job_user_idempotency_key", "user", "idempotency_key",
                            unique=True),)

    id: str = Field(default_factory=new_id, primary_key=True)
    user: str = Field(index=True)
    app: str = Field(index=True)
    hpc: str = Field(index=True)
    status: str = Field(default=JobStatus.QUEUED.value, index=True)
    message: str | None = None
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    resources: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    upload: str | None = None
    scheduler_id: str | None = None
    exit_code: int | None = None
    scheduler_state: str | None = None
    outcome: str | None = Field(default=None, description="final status decided while finishing")
    cancel_requested: bool = False
    remote_dir: str | None = None
    worker: str | None = Field(default=None, description="worker that claimed the job")
    stdout_size: int = 0
    stderr_size: int = 0
    elapsed_seconds: int | None = None
    cpus: int | None = None
    charged_seconds: float | None = None
    log_checked_at: dt.datetime | None = None
    submit_attempted_at: dt.datetime | None = Field(
        default=None, description="set before sbatch is called: only then can the scheduler "
                                  "know the job, so only then is a lookup by name needed")
    idempotency_key: str | None = Field(
        default=None, description="the client's key of the POST that made the job (unique "
                                  "per user)")
    idempotency_fingerprint: str | None = Field(
        default=None, description="hash of the request that made the job under its "
                                  "idempotency key: a retry must carry the same request")
    log_changed_at: dt.datetime | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)
    queued_at: dt.datetime | None = None
    staging_at: dt.datetime | None = None
    submitted_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    updated_at: dt.datetime = Field(default_factory=utcnow, index=True)


class Event(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(index=True, foreign_key="job.id")
    time: dt.datetime = Field(default_factory=utcnow)
    type: str
    message: str


class LogChunk(SQLModel, table=True):
    """Bytes [offset, offset+len(data)) of a job's stdout or stderr."""

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(index=True, foreign_key="job.id")
    stream: str
    offset: int
    data: bytes = Field(sa_column=Column(LargeBinary))


class App(SQLModel, table=True):
    id: str = Field(primary_key=True)
    name: str
    source: str
    path: str
    manifest: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: dt.datetime = Field(default_factory=utcnow)


class Upload(SQLModel, table=True):
    id: str = Field(default_factory=new_id, primary_key=True)
    user: str = Field(index=True)
    name: str
    path: str
    size: int
    created_at: dt.datetime = Field(default_factory=utcnow)


class Quota(SQLModel, table=True):
    user: str = Field(primary_key=True)
    limit_seconds: float | None = None
    used_seconds: float = 0


class Worker(SQLModel, table=True):
    id: str = Field(primary_key=True)
    host: str
    pid: int
    started_at: dt.datetime = Field(default_factory=utcnow)
    heartbeat_at: dt.datetime = Field(default_factory=utcnow)
    leases: list[str] = Field(default_factory=list, sa_column=Column(JSON))

    def alive(self, worker_timeout: float, now: dt.datetime | None = None) -> bool:
        """The one liveness rule: alive while the last heartbeat is younger than
        worker_timeout (Site.worker_timeout); a dead worker's work is taken over."""
        return (now or utcnow()) - aware(self.heartbeat_at) < dt.timedelta(
            seconds=worker_timeout)


class HPCState(SQLModel, table=True):
    id: str = Field(primary_key=True)
    draining: bool = False
    reachable: bool | None = None
    message: str | None = None
    checked_at: dt.datetime | None = None
