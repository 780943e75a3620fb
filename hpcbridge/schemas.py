"""The API's models: what the middleware answers and accepts (shared by server and SDK)."""
from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hpcbridge.lifecycle import StatusLiteral


class Model(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")


class ErrorDetail(Model):
    loc: list[str | int] = Field(description="path of the offending field, e.g. ['params','n']")
    msg: str


class ErrorBody(Model):
    error: str = Field(description="machine-readable code, e.g. 'not_found'")
    message: str
    details: list[ErrorDetail] | None = None
    error_id: str | None = None


class Health(Model):
    status: str
    version: str


class Quota(Model):
    limit_seconds: float | None = Field(None, description="CPU-seconds allowed; null = no limit")
    used_seconds: float = 0


class Me(Model):
    name: str
    admin: bool
    quota: Quota


class HPCInfo(Model):
    id: str
    name: str
    scheduler: str
    partitions: list[str]
    capacity: int
    active_jobs: int
    reachable: bool | None = None
    draining: bool = False
    message: str | None = None


class ParamRule(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["integer", "float", "string_option", "string_input", "boolean"]
    require: bool = False
    min: float | None = None
    max: float | None = None
    step: float | None = None
    default_value: Any = None
    options: list[str] | None = None
    description: str | None = None


class SlurmRule(BaseModel):
    model_config = ConfigDict(extra="allow")
    min: float | None = None
    max: float | None = None
    step: float | None = None
    default_value: Any = None
    unit: str | None = None
    options: list[str] | None = None


class AppInfo(Model):
    id: str
    name: str
    description: str = ""
    kind: Literal["batch", "service"] = Field("batch", description="batch: submit it as a "
                                              "job; service: start it as a session")
    container: str | None = None
    supported_hpc: list[str]
    default_hpc: str | None = None
    require_upload_data: bool = False
    param_rules: dict[str, ParamRule] = {}
    slurm_input_rules: dict[str, SlurmRule] = {}


class AppCreate(Model):
    source: str = Field(description="git URL or a folder on the middleware's machine")
    id: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")


class Resources(Model):
    time: int | None = Field(None, description="wall time in minutes")
    cpus: int | None = None
    memory: int | None = Field(None, description="memory in MB")
    gpus: int | None = None
    partition: str | None = None


class NotifyRequest(Model):
    webhook: str | None = Field(None, max_length=2000, description="an http(s) URL that "
                                "gets a signed POST when the job ends")
    email: str | None = Field(None, max_length=254, description="an address that gets a "
                              "mail when the job ends")


class JobCreate(Model):
    app: str
    hpc: str | None = None
    params: dict[str, Any] = {}
    resources: Resources = Resources()
    upload: str | None = None
    notify: NotifyRequest | None = None


class JobInfo(Model):
    id: str
    user: str
    app: str
    hpc: str
    status: StatusLiteral
    message: str | None = None
    params: dict[str, Any] = {}
    resources: dict[str, Any] = {}
    upload: str | None = None
    scheduler_id: str | None = None
    exit_code: int | None = None
    cancel_requested: bool = False
    sweep_id: str | None = None
    sweep_index: int | None = None
    created_at: dt.datetime
    queued_at: dt.datetime | None = None
    submitted_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    updated_at: dt.datetime


class JobList(Model):
    jobs: list[JobInfo]
    total: int


class EventInfo(Model):
    time: dt.datetime
    type: str
    message: str


class LogChunk(Model):
    stream: Literal["stdout", "stderr"]
    offset: int
    next_offset: int
    data: str
    complete: bool


class ResultEntry(Model):
    path: str
    size: int
    is_dir: bool


class UploadInfo(Model):
    id: str
    name: str
    size: int


class QuotaUpdate(Model):
    limit_seconds: float | None = Field(None, ge=0)


class WorkerInfo(Model):
    id: str
    host: str
    pid: int
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    alive: bool
    leases: list[str] = []
