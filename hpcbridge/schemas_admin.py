"""The API's models of the operations API: health, stuck jobs, usage (issue #25): shared by server and SDK."""
from __future__ import annotations

import datetime as dt

from pydantic import Field

from hpcbridge.lifecycle import StatusLiteral

from .schemas import HPCInfo, JobInfo, Model, Quota, WorkerInfo

DEFAULT_STUCK_SECONDS = 3600


class CycleInfo(Model):
    """The poller's last cycle on an HPC (maintainer/stats.py)."""

    at: dt.datetime | None = Field(None, description="when the last poll cycle started")
    seconds: float | None = Field(None, description="how long the last cycle took")
    mean_seconds: float | None = Field(None, description="mean cycle time since the stats began")
    worker: str | None = Field(None, description="the worker that ran it")
    unreachable: bool = Field(False, description="the last cycle could not reach the HPC")


class HPCHealth(Model):
    hpc: HPCInfo
    checked_at: dt.datetime | None = Field(None, description="when reachability was last "
                                           "recorded")
    last_cycle: CycleInfo
    cycles: int = Field(0, description="poll cycles counted")
    commands_per_minute: float = Field(0, description="remote commands sent in the last "
                                       "minute (poll cycles)")
    commands_cap: int = Field(description="the HPC's commands_per_minute limit")
    commands: dict[str, int] = Field(default_factory=dict, description="remote commands "
                                     "of poll cycles since the stats began, by program")
    last_error: str | None = Field(None, description="why the HPC was last found unusable")
    stats_error: str | None = Field(None, description="set when Redis (the poll statistics) "
                                    "could not be read")


class WorkerHealth(WorkerInfo):
    claims: list[str] | None = Field(None, description="ids of the jobs this worker is "
                                     "staging or finishing now (its claims); null when "
                                     "Redis could not be read")


class EventBrief(Model):
    time: dt.datetime
    type: str
    message: str


class StuckJob(Model):
    job: JobInfo
    status_since: dt.datetime = Field(description="when the job entered its current status")
    stuck_seconds: float
    last_event: EventBrief | None = None
    claimed_by: str | None = Field(None, description="the worker holding the job's claim")
    claim_holder_alive: bool | None = None


class UserUsage(Model):
    user: str
    jobs: dict[StatusLiteral, int] = Field(description="jobs by status")
    active_jobs: int
    charged_seconds: float = Field(description="CPU-seconds charged for ended jobs")
    quota: Quota


class RequeueResult(Model):
    job: JobInfo
    requeued: bool
    message: str


# GET /admin/workers answers [WorkerHealth] (its entry is in server/openapi.py)
ROUTES: list[tuple] = [
    ("get", "/admin/hpcs", "Health of each HPC: reachability, poll cycles, command rate "
     "(admin)", None, {200: [HPCHealth]}, True),
    ("get", "/admin/stuck", "Jobs in one non-final status longer than a threshold, with "
     "their last event (admin)", None, {200: [StuckJob]}, True),
    ("get", "/admin/users", "Usage per user: jobs by status, CPU-seconds, quota (admin)",
     None, {200: [UserUsage]}, True),
    ("post", "/admin/jobs/{job_id}/requeue", "Offer a job stuck in staging or finishing "
     "to the workers again (admin)", None, {202: RequeueResult}, True),
]
QUERY: dict[str, list] = {
    "/admin/stuck": [("older_than", {"type": "integer", "minimum": 0,
                                     "default": DEFAULT_STUCK_SECONDS,
                                     "description": "seconds in the same status"}),
                     ("hpc", "string"),
                     ("limit", {"type": "integer", "minimum": 1, "maximum": 1000,
                                "default": 100})],
}
