"""The API's models of parameter sweeps (issue #24): shared by server and SDK."""
from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field

from hpcbridge.lifecycle import STATUSES
from hpcbridge.schemas import JobList, Model, NotifyRequest, Resources

MAX_SWEEP_SIZE = 10_000  # elements of one sweep (one Slurm array is at most this big too)


class GridRange(Model):
    """Values start, start+step, … below stop (like numpy.arange), rounded so that
    0.1 steps give 0.3, not 0.30000000000000004."""

    range: list[int | float] = Field(min_length=3, max_length=3,
                               description="[start, stop, step]; stop is left out")


class SweepCreate(Model):
    """A sweep: the same app, HPC and resources for every element; the parameter sets
    either listed (`params`) or as the cartesian product of `grid` over `base`."""

    app: str
    hpc: str | None = None
    resources: Resources = Resources()
    upload: str | None = Field(None, description="one upload shared by every element")
    throttle: int | None = Field(None, ge=1, description="elements running at once "
                                 "(Slurm's %N); default: the app's sweep_throttle, if any")
    params: list[dict[str, Any]] | None = Field(
        None, description="one parameter set per element, in element order")
    grid: dict[str, list[Any] | GridRange] | None = Field(
        None, description="name -> values or {\"range\": [start, stop, step]}; the "
                          "elements are every combination, the last name varying fastest")
    base: dict[str, Any] = Field({}, description="parameters every grid element shares")
    notify: NotifyRequest | None = Field(
        None, description="told once, when the sweep has ended (every element final): "
                          "event `sweep.ended`; its elements never notify on their own")


class SweepInfo(Model):
    id: str
    user: str
    app: str
    hpc: str
    size: int
    resources: dict[str, Any] = {}
    throttle: int | None = None
    upload: str | None = None
    scheduler_id: str | None = Field(None, description="the array job's id (Slurm)")
    counts: dict[str, int] = Field({}, description="elements by status (only statuses "
                                   "with elements)")
    finished: int = Field(0, description="elements that ended (succeeded, failed or "
                          "cancelled)")
    progress: float = Field(0.0, description="finished / size, 0 to 1")
    done: bool = Field(False, description="every element ended")
    ended_at: dt.datetime | None = Field(None, description="when its last element ended")
    created_at: dt.datetime
    updated_at: dt.datetime


class SweepList(Model):
    sweeps: list[SweepInfo]
    total: int


# OpenAPI entries, in hpcbridge.server.openapi's ROUTES form:
# (method, path, summary, request model, {status: response model or [model]}, admin)
ROUTES: list[tuple] = [
    ("get", "/sweeps", "The caller's sweeps", None, {200: SweepList}, False),
    ("post", "/sweeps", "Submit a parameter sweep (every point checked first)", SweepCreate,
     {201: SweepInfo}, False),
    ("get", "/sweeps/{sweep_id}", "One sweep: counts by status and progress", None,
     {200: SweepInfo}, False),
    ("get", "/sweeps/{sweep_id}/jobs", "A sweep's elements (jobs), by index", None,
     {200: JobList}, False),
    ("post", "/sweeps/{sweep_id}/cancel", "Cancel every active element of a sweep", None,
     {202: SweepInfo}, False),
]
_LIMIT = {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}
_OFFSET = {"type": "integer", "minimum": 0, "default": 0}
QUERY: dict[str, list] = {  # path -> [(name, schema)], like openapi.QUERY
    "/sweeps": [("limit", _LIMIT), ("offset", _OFFSET),
                ("all", {"type": "string", "description": "admins: 1 = everybody's sweeps"})],
    "/sweeps/{sweep_id}/jobs": [
        ("status", {"type": "array", "items": {"type": "string", "enum": list(STATUSES)},
                    "description": "statuses; repeat it, or join with commas"}),
        ("limit", _LIMIT), ("offset", _OFFSET)],
}
