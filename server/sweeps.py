"""Parameter sweeps as plain functions (no HTTP, no database): the points of a request (a
list, or a grid's cartesian product over a base), and every point judged by the manifest's
rules before anything is accepted. The handler (server/handlers/sweeps.py) calls `admit_sweep`.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from hpcbridge.manifest import check_params, field_errors, raise_for
from hpcbridge.schemas_sweeps import MAX_SWEEP_SIZE, GridRange, SweepCreate

from .submission import JobRequest, app_info, check_open, check_quota, check_rules, find_app

MAX_DETAILS = 50  # errors named in one 422: enough to fix a grid, small enough to read
RANGE_TOLERANCE = 1e-9  # relative: a stop that float rounding puts a hair past a step


class SweepRequest(SweepCreate):
    """`SweepCreate` as it arrives: resources as sent, judged by the manifest's rules in
    the panel's words (as submission.JobRequest does for a job)."""

    resources: dict[str, Any] = {}


@dataclass(frozen=True)
class SweepAdmission:
    """A sweep that passed every rule: what the store records."""

    app: str
    hpc: str
    resources: dict[str, Any]
    upload: str | None
    throttle: int | None
    points: list[dict[str, Any]]


def _decimals(x: float) -> int:
    exponent = Decimal(repr(x)).as_tuple().exponent
    return max(-exponent, 0) if isinstance(exponent, int) else 0


def range_values(start: float, stop: float, step: float, loc: list,
                 limit: int = MAX_SWEEP_SIZE) -> list:
    """start, start+step, … short of stop, like numpy.arange, but float-safe: a stop that is
    a whole number of steps away is left out even when rounding says 2.9999999999999996
    steps, and each value is rounded to the inputs' decimals (0.3, not
    0.30000000000000004). Integers stay integers. ManifestError past `limit` values."""
    if not all(math.isfinite(v) for v in (start, stop, step)) or step == 0:
        raise_for([{"loc": loc, "msg": "start, stop and step must be finite, step not 0"}])
    steps = (stop - start) / step
    count = max(0, math.ceil(steps - RANGE_TOLERANCE * max(1.0, abs(steps))))
    if count == 0:
        raise_for([{"loc": loc, "msg": "the range is empty"}])
    if count > limit:
        raise_for([{"loc": loc, "msg": f"has {count} values; a sweep has at most {limit}"}])
    if all(isinstance(v, int) for v in (start, step)):
        return [start + i * step for i in range(count)]
    digits = max(_decimals(float(start)), _decimals(float(step)))
    return [round(start + i * step, digits) for i in range(count)]


def grid_axes(grid: dict[str, list | GridRange], limit: int = MAX_SWEEP_SIZE) -> dict:
    """Each grid name's values; ManifestError for an empty axis or a product past `limit`."""
    axes: dict[str, list] = {}
    size = 1
    for name, values in grid.items():
        if isinstance(values, dict):  # a plain dict, as a caller without pydantic has it
            try:
                values = GridRange.model_validate(values)
            except ValidationError as exc:
                raise field_errors(exc, ("grid", name)) from None
        if isinstance(values, GridRange):
            values = range_values(*values.range, loc=["grid", name, "range"], limit=limit)
        if not values:
            raise_for([{"loc": ["grid", name], "msg": "has no values"}])
        axes[name] = values
        size *= len(values)
        if size > limit:
            raise_for([{"loc": ["grid"], "msg": f"makes more than {limit} points; a sweep "
                                                f"has at most {limit}"}])
    return axes


def expand_grid(grid: dict, base: dict[str, Any] | None = None,
                limit: int = MAX_SWEEP_SIZE) -> list[dict[str, Any]]:
    """Every combination of the grid's values (the last name varying fastest), each over
    `base`. A name in both is an error: which one was meant?"""
    base = base or {}
    both = [n for n in grid if n in base]
    raise_for([{"loc": ["base", n], "msg": "is also a grid axis"} for n in both])
    axes = grid_axes(grid, limit)
    names = list(axes)
    return [{**base, **dict(zip(names, combo))}
            for combo in itertools.product(*axes.values())]


def sweep_points(request: SweepCreate, limit: int = MAX_SWEEP_SIZE) -> list[dict[str, Any]]:
    """The parameter sets of a request: its `params`, or its grid over its base."""
    if (request.params is None) == (request.grid is None):
        raise_for([{"loc": ["params"], "msg": "give either params (a list of parameter "
                                              "sets) or grid, not both or neither"}])
    if request.params is not None:
        if request.base:
            raise_for([{"loc": ["base"], "msg": "only with grid"}])
        if not request.params:
            raise_for([{"loc": ["params"], "msg": "has no parameter sets"}])
        if len(request.params) > limit:
            raise_for([{"loc": ["params"], "msg": f"has {len(request.params)} parameter "
                                                  f"sets; a sweep has at most {limit}"}])
        return [dict(p) for p in request.params]
    return expand_grid(request.grid, request.base, limit)


def _where(request: SweepCreate, index: int, point: dict, error: dict) -> dict:
    """An element's error at the place of the request that made it: the point of a list
    (params.17.x), the grid axis or base name of a grid (with the value in the message)."""
    name = error["loc"][-1]
    if request.params is not None:
        return {"loc": ["params", index, *error["loc"][1:]], "msg": error["msg"]}
    if name in (request.grid or {}) and error["msg"] != "unknown parameter":
        return {"loc": ["grid", name], "msg": f"value {point.get(name)!r} {error['msg']}"}
    # a base value, an unknown grid name, or a required one nobody gave (base is its place)
    return {"loc": ["grid" if name in (request.grid or {}) else "base", name],
            "msg": error["msg"]}


def check_points(param_rules: dict, request: SweepCreate,
                 points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each point's clean parameters (defaults filled in); ManifestError naming every bad
    point (up to MAX_DETAILS; a grid's axis value once, however many points share it)."""
    clean, errors, seen = [], [], set()
    for index, point in enumerate(points):
        params, point_errors = check_params(param_rules, point)
        clean.append(params)
        for error in point_errors:
            detail = _where(request, index, point, error)
            key = (tuple(detail["loc"]), detail["msg"])
            if key not in seen and len(errors) < MAX_DETAILS:
                seen.add(key)
                errors.append(detail)
    raise_for(errors)
    return clean


def default_throttle(manifest: dict) -> int | None:
    """The app's own bound on elements running at once (manifest key sweep_throttle)."""
    value = manifest.get("sweep_throttle")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 \
        else None


def admit_sweep(store, hpcs: dict, user: str, request: SweepRequest,
                default_quota: float | None, limit: int = MAX_SWEEP_SIZE) -> SweepAdmission:
    """The sweep as the store records it, or the error that refuses it: as for a job
    (submission.admit: unknown app, broken rules, drained HPC, quota), and every point's
    parameters; a sweep past `limit` points is a 422."""
    app = find_app(store, request.app)
    info = app_info(app, hpcs)
    points = sweep_points(request, limit)
    # HPC, resources and upload are the same for every element: judged once
    first = JobRequest(app=request.app, hpc=request.hpc, params={},
                       resources=request.resources, upload=request.upload)
    hpc_id, _, resources = check_rules(
        info.model_copy(update={"param_rules": {}}), hpcs, first,
        lambda upload_id: store.get_upload(upload_id, user=user) is not None)
    clean = check_points(info.param_rules, request, points)
    check_open(store, hpc_id)
    check_quota(store, user, default_quota)
    throttle = request.throttle or default_throttle(app.manifest)
    return SweepAdmission(app=app.id, hpc=hpc_id, resources=resources,
                          upload=request.upload, throttle=throttle, points=clean)
