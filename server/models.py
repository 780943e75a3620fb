"""Database tables (sqlmodel). Written only by store.py."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, LargeBinary
from sqlmodel import Field, SQLModel

from hpcbridge.clock import aware, utcnow
from hpcbridge.lifecycle import JobStatus

__all__ = ["App", "Event", "HPCState", "Job", "LogChunk", "Notification", "Quota",
           "ServiceSession", "SessionEvent", "Sweep", "Upload", "Worker", "new_id"]


def new_id() -> str:
    return uuid.uuid4().hex


class Job(SQLModel, table=True):
    """One user's job: the JobInfo fields of seeds/003 plus the maintainer's cursors."""

    __table_args__ = (Index("ix_job_user_idempotency_key", "user", "idempotency_key",
                            unique=True),
                      # "is any element of this sweep still active?", asked by every
                      # element's final transition: a seek, not a scan of its ended ones
                      Index("ix_job_sweep_id_status", "sweep_id", "status"))

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
    sweep_id: str | None = Field(default=None, index=True,
                                 description="the sweep this job is an element of")
    sweep_index: int | None = Field(default=None, description="its index in the sweep "
                                    "(the Slurm array task id)")
    notify: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON),
                                          description="where to say that the job ended: "
                                                      "{'webhook': url, 'email': address}")
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
    size: int = Field(sa_column=Column(BigInteger, nullable=False))  # uploads over 2 GiB
    created_at: dt.datetime = Field(default_factory=utcnow)


class Quota(SQLModel, table=True):
    user: str = Field(primary_key=True)
    limit_seconds: float | None = None
    used_seconds: float = 0
    session_limit_seconds: float | None = Field(
        default=None, description="wall seconds of interactive sessions allowed; null = the "
                                  "site's default")
    session_used_seconds: float = 0


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


class Sweep(SQLModel, table=True):
    """A parameter sweep: its elements are Jobs (Job.sweep_id); on Slurm one job array."""

    id: str = Field(default_factory=new_id, primary_key=True)
    user: str = Field(index=True)
    app: str
    hpc: str
    size: int
    resources: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    throttle: int | None = Field(default=None, description="elements running at once (%N)")
    upload: str | None = None
    scheduler_id: str | None = Field(default=None, description="the array job's id")
    remote_dir: str | None = None
    submit_attempted_at: dt.datetime | None = None
    notify: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON),
                                          description="where to say that the sweep ended "
                                                      "(once, not per element): "
                                                      "{'webhook': url, 'email': address}")
    ended_at: dt.datetime | None = Field(
        default=None, description="when its last element became final: set once, in that "
                                  "transition's transaction (with the sweep's outbox rows)")
    cleaned_at: dt.datetime | None = Field(
        default=None, description="when its HPC folder was dealt with after the end: "
                                  "removed, or kept as the HPC's cleanup setting says")
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)


class ServiceSession(SQLModel, table=True):
    """An interactive session: a service (kind "service" app) running as a scheduler job,
    reached through the middleware's proxy. stopped -> starting -> running -> stopped."""

    __tablename__ = "service_session"

    id: str = Field(default_factory=new_id, primary_key=True)
    user: str = Field(index=True)
    app: str
    hpc: str = Field(index=True)
    status: str = Field(default="starting", index=True)
    message: str | None = None
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    resources: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    scheduler_id: str | None = None
    remote_dir: str | None = None
    worker: str | None = None
    node: str | None = None
    port: int | None = None
    base_url: str | None = Field(default=None, description="the path the service is served "
                                 "under, as the browser sees it (its proxy path)")
    secret: str | None = Field(default=None, description="the service's own token: never "
                                                         "shown in the API")
    stop_requested: bool = False
    time_limit_seconds: int | None = None
    charged_seconds: float = 0
    charged_until: dt.datetime | None = Field(default=None, description="time used is "
                                              "charged up to here")
    submit_attempted_at: dt.datetime | None = None
    last_activity_at: dt.datetime | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)
    running_at: dt.datetime | None = None
    stopped_at: dt.datetime | None = None
    updated_at: dt.datetime = Field(default_factory=utcnow, index=True)


class SessionEvent(SQLModel, table=True):
    __tablename__ = "session_event"

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(index=True, foreign_key="service_session.id")
    time: dt.datetime = Field(default_factory=utcnow)
    type: str
    message: str


class Notification(SQLModel, table=True):
    """An outbox row: one message to send about a job's or a sweep's end, retried until
    sent or given up (written in the same transaction as the final transition, so none is
    lost). A sweep's row names the element whose end ended the sweep (its events say
    what became of the message) and the sweep."""

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(index=True, foreign_key="job.id")
    sweep_id: str | None = Field(default=None, index=True, foreign_key="sweep.id",
                                 description="set for the message about a sweep's end")
    channel: str = Field(description="webhook | email")
    target: str
    status: str = Field(default="pending", index=True, description="pending|sent|failed")
    attempts: int = 0
    next_attempt_at: dt.datetime = Field(default_factory=utcnow, index=True)
    last_error: str | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)
    sent_at: dt.datetime | None = None
