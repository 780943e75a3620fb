"""Application manifests (CyberGIS-Compute format) and the rules they impose (pure).

Errors are neutral (`ManifestError`): the middleware answers them with 422, the maintainer
ends the job `failed` with the message.
"""
from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from hpcbridge.schemas import ParamRule, SlurmRule


class ManifestError(ValueError):
    """A manifest, parameter or resource that breaks the rules; `details` holds
    `[{"loc": [...], "msg": ...}]` for each field."""

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.message, self.details = message, details


def field_errors(exc: ValidationError, prefix: tuple = ()) -> ManifestError:
    """A pydantic ValidationError as a ManifestError with field paths."""
    details = [{"loc": [*prefix, *e["loc"]], "msg": e["msg"]} for e in exc.errors()]
    first = details[0] if details else {"loc": [], "msg": "invalid"}
    where = ".".join(str(p) for p in first["loc"])
    return ManifestError(f"{where}: {first['msg']}" if where else first["msg"], details)

RESOURCE_NAMES = ("time", "cpus", "memory", "gpus", "partition")
# "batch": a job that runs to its end (the default); "service": an interactive session's
# service, which listens on $HPCBRIDGE_SESSION_PORT until stopped (docs/sessions.md)
APP_KINDS = ("batch", "service")


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    description: str = ""
    kind: Literal["batch", "service"] = "batch"
    container: str | None = None
    pre_processing_stage: str | None = None
    execution_stage: str
    post_processing_stage: str | None = None
    supported_hpc: list[str]
    default_hpc: str | None = None
    require_upload_data: bool = False
    param_rules: dict[str, ParamRule] = {}
    slurm_input_rules: dict[str, SlurmRule] = {}

    def command(self) -> str:
        stages = (self.pre_processing_stage, self.execution_stage, self.post_processing_stage)
        return "\n".join(s for s in stages if s)


def parse_manifest(data: dict) -> Manifest:
    try:
        manifest = Manifest(**data)
    except ValidationError as exc:
        raise field_errors(exc, ("manifest",)) from None
    bad = [n for n in manifest.param_rules if not n.isidentifier()]
    if bad:
        raise ManifestError(f"parameter names must be identifiers: {bad}")
    unknown = [n for n in manifest.slurm_input_rules if n not in RESOURCE_NAMES]
    if unknown:
        raise ManifestError(f"unknown slurm_input_rules {unknown}; "
                               f"known: {list(RESOURCE_NAMES)}")
    for name, rule in manifest.slurm_input_rules.items():
        # defaults go to the scheduler as they are: they must be of the resource's type
        value = rule.default_value
        if value is None:
            continue
        if name == "partition" and not isinstance(value, str) or name != "partition" and (
                isinstance(value, bool) or not isinstance(value, int)):
            raise ManifestError(
                f"slurm_input_rules.{name}.default_value must be "
                f"{'a string' if name == 'partition' else 'an integer'}",
                [{"loc": ["manifest", "slurm_input_rules", name, "default_value"],
                  "msg": "wrong type"}])
    return manifest


# --- the rules of a submission, in the panel's words ---------------------------------------
# labextension/src/validate.ts applies the same rules with the same messages, and
# tests/vectors/validation.json holds the cases both sides must answer alike. A value given
# as JSON text stays text: "5" is not an integer.
STEP_TOLERANCE = 1e-9  # relative: absorbs float rounding (0.1 × 3 = 0.30000000000000004)


class AppRules(BaseModel):
    """The part of an app that judges a submission (AppInfo and Manifest have it too)."""

    model_config = ConfigDict(extra="ignore")
    supported_hpc: list[str] = []
    default_hpc: str | None = None
    require_upload_data: bool = False
    param_rules: dict[str, ParamRule] = {}
    slurm_input_rules: dict[str, SlurmRule] = {}


def _missing(value) -> bool:
    return value is None or value == ""


def _fmt(x: float) -> str:
    """A number as the panel prints it: 10 not 10.0, 0.25."""
    return str(int(x)) if float(x).is_integer() else str(x)


def _one_of(options) -> str:
    return f"must be one of: {', '.join(options)}"


def _number(value, integer: bool):
    """(number, None) for a JSON number of the right kind, else (None, why)."""
    kind = "must be an integer" if integer else "must be a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, kind
    if isinstance(value, float) and not math.isfinite(value):
        return None, "must be a finite number"
    if integer:
        if isinstance(value, float) and not value.is_integer():
            return None, kind
        return int(value), None
    try:
        return float(value), None
    except OverflowError:  # an integer too large for a float
        return None, "must be a finite number"


def _off_step(value, base: float, step: float) -> bool:
    if isinstance(value, int) and float(base).is_integer() and float(step).is_integer():
        return (value - int(base)) % int(step) != 0  # exact, whatever the size
    try:
        k = (value - base) / step
    except OverflowError:
        return False
    return abs(k - round(k)) > STEP_TOLERANCE * max(1.0, abs(k))


def range_error(value, rule) -> str | None:
    """The min/max/step message for a number, or None if it is in range. A step counts from
    min (from 0 without min) and is checked after min and max."""
    if rule.min is not None and value < rule.min:
        return f"must be at least {_fmt(rule.min)}"
    if rule.max is not None and value > rule.max:
        return f"must be at most {_fmt(rule.max)}"
    step = rule.step
    if step is not None and step > 0:
        base = rule.min if rule.min is not None else 0
        if _off_step(value, base, step):
            if not _off_step(base, 0, step):  # counting from min is counting from 0
                return f"must be a multiple of {_fmt(step)}"
            return f"must be {_fmt(base)} plus a multiple of {_fmt(step)}"
    return None


def _default(rule: ParamRule):
    """A rule's default; a manifest may write a numeric default as text, which the panel
    reads as the number (it fills the form with it), so the server does too."""
    value = rule.default_value
    if rule.type in ("integer", "float") and isinstance(value, str):
        try:
            number = float(value.strip())
            return int(number) if rule.type == "integer" and number.is_integer() else number
        except ValueError:
            return value
    return value


def check_param(rule: ParamRule, value):
    """(clean value, None) or (None, message) for one present parameter value."""
    if rule.type in ("integer", "float"):
        number, why = _number(value, rule.type == "integer")
        why = why or range_error(number, rule)
        return (None, why) if why else (number, None)
    if rule.type == "boolean":
        return (value, None) if isinstance(value, bool) else (None, "must be true or false")
    if rule.type == "string_option":
        options = rule.options or []
        return (value, None) if isinstance(value, str) and value in options \
            else (None, _one_of(options))
    if not isinstance(value, str):  # string_input
        return None, "must be a string"
    if len(value) > 10000:
        return None, "must be at most 10000 characters"
    if "\0" in value:
        return None, "must not contain NUL bytes"
    return value, None


def check_params(rules: dict[str, ParamRule], params: dict[str, Any]):
    """(clean params, errors): rules in their order, then unknown names. A missing value
    (absent, null or "") takes the rule's default, except that a required one sent empty
    is an error, as in the panel (whose fields start with the default)."""
    errors: list[dict] = []
    clean: dict[str, Any] = {}
    for name, rule in rules.items():
        value = params.get(name)
        if _missing(value) and not (rule.require and name in params):
            value = _default(rule)
        if _missing(value):
            if rule.require:
                errors.append({"loc": ["params", name], "msg": "is required"})
            continue
        value, msg = check_param(rule, value)
        if msg:
            errors.append({"loc": ["params", name], "msg": msg})
        else:
            clean[name] = value
    errors += [{"loc": ["params", n], "msg": "unknown parameter"} for n in params
               if n not in rules]
    return clean, errors


def check_resources(rules: dict[str, SlurmRule], resources: dict[str, Any],
                    partitions=(), max_time: int | None = None):
    """(clean resources, errors): rules in their order, then unknown names. A missing value
    takes the default; a partition must be one of the rule's options, else of the HPC's;
    other resources are integers; `max_time` (the HPC's) caps the time, defaults included."""
    errors: list[dict] = []
    clean: dict[str, Any] = {}
    for name, rule in rules.items():
        loc = ["resources", name]
        value = resources.get(name)
        if _missing(value):
            if rule.default_value is not None:
                clean[name] = rule.default_value
        elif rule.options is not None or name == "partition":
            allowed = rule.options or list(partitions)
            if allowed and value not in allowed:
                errors.append({"loc": loc, "msg": _one_of(allowed)})
            elif not isinstance(value, str):
                errors.append({"loc": loc, "msg": "must be a string"})
            else:
                clean[name] = value
        else:
            number, why = _number(value, integer=True)
            why = why or range_error(number, rule)
            if why:
                errors.append({"loc": loc, "msg": why})
            else:
                clean[name] = number
        if name == "time" and max_time is not None and name in clean \
                and clean[name] > max_time:
            errors.append({"loc": loc, "msg": f"must be at most {max_time}"})
    errors += [{"loc": ["resources", n], "msg": "unknown resource"} for n in resources
               if n not in rules]
    return clean, errors


def check_submission(app, submission: dict, partitions=(), max_time: int | None = None):
    """(params, resources, errors) of a submission against an app (AppRules, AppInfo or
    Manifest), every error in the panel's order: params, unknown params, resources, unknown
    resources, upload, hpc. `partitions` and `max_time` are the chosen HPC's."""
    params, errors = check_params(app.param_rules, submission.get("params") or {})
    resources, more = check_resources(app.slurm_input_rules,
                                      submission.get("resources") or {}, partitions, max_time)
    errors += more
    if app.require_upload_data and _missing(submission.get("upload")):
        errors.append({"loc": ["upload"], "msg": "is required"})
    hpc = submission.get("hpc")
    if hpc is not None and hpc not in app.supported_hpc:
        errors.append({"loc": ["hpc"], "msg": _one_of(app.supported_hpc)
                       if app.supported_hpc else "this app runs on no configured HPC"})
    return params, resources, errors


def validate_submission(app_rules: dict, submission: dict, partitions=(),
                        max_time: int | None = None) -> list[dict]:
    """Every `{"loc", "msg"}` error of a submission (JSON-like dicts, as the panel has them)."""
    rules = AppRules.model_validate(app_rules)
    return check_submission(rules, submission, partitions, max_time)[2]


def validate_params(manifest: Manifest, params: dict[str, Any]) -> dict[str, Any]:
    """The clean parameters; ManifestError with every field's error."""
    clean, errors = check_params(manifest.param_rules, params)
    raise_for(errors)
    return clean


def validate_resources(manifest: Manifest, resources: dict[str, Any], partitions=(),
                       max_time: int | None = None) -> dict[str, Any]:
    """The clean resources; ManifestError with every field's error."""
    clean, errors = check_resources(manifest.slurm_input_rules, resources, partitions, max_time)
    raise_for(errors)
    return clean


def raise_for(errors: list[dict]) -> None:
    """ManifestError summarising `errors` (the first, and how many more), if any."""
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ManifestError(f"{'.'.join(map(str, first['loc']))} {first['msg']}{more}", errors)
