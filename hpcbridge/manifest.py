"""Application manifests (CyberGIS-Compute format) and the rules they impose (pure).

Errors are neutral (`ManifestError`): the middleware answers them with 422, the maintainer
ends the job `failed` with the message.
"""
from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from hpcbridge.schemas import ParamRule, Resources, SlurmRule


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


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    description: str = ""
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


def _number(rule, value, loc, errors, integer: bool):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        errors.append({"loc": loc, "msg": "must be a number"})
        return None
    try:
        number = int(value) if integer and not isinstance(value, float) else float(value)
    except (TypeError, ValueError):
        errors.append({"loc": loc, "msg": "must be an integer" if integer else "must be a number"})
        return None
    except OverflowError:  # an integer too large for a float
        errors.append({"loc": loc, "msg": "must be a finite number"})
        return None
    if integer and (isinstance(number, float) and not number.is_integer()):
        errors.append({"loc": loc, "msg": "must be an integer"})
        return None
    if isinstance(number, float) and not math.isfinite(number):
        errors.append({"loc": loc, "msg": "must be a finite number"})
        return None
    if integer:
        number = int(number)
    if rule.min is not None and number < rule.min:
        errors.append({"loc": loc, "msg": f"must be at least {_fmt(rule.min)}"})
    elif rule.max is not None and number > rule.max:
        errors.append({"loc": loc, "msg": f"must be at most {_fmt(rule.max)}"})
    return number


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def validate_params(manifest: Manifest, params: dict[str, Any]) -> dict[str, Any]:
    """Apply param_rules: defaults, types, ranges, options. Raises 422 with field paths."""
    errors: list[dict] = []
    clean: dict[str, Any] = {}
    for name in params:
        if name not in manifest.param_rules:
            errors.append({"loc": ["params", name], "msg": "unknown parameter"})
    for name, rule in manifest.param_rules.items():
        loc = ["params", name]
        value = params.get(name, rule.default_value)
        if value is None or value == "":
            if rule.require:
                errors.append({"loc": loc, "msg": "is required"})
            continue
        if rule.type in ("integer", "float"):
            number = _number(rule, value, loc, errors, rule.type == "integer")
            if number is not None:
                clean[name] = number
        elif rule.type == "boolean":
            if not isinstance(value, bool):
                errors.append({"loc": loc, "msg": "must be true or false"})
            else:
                clean[name] = value
        elif rule.type == "string_option":
            if str(value) not in (rule.options or []):
                errors.append({"loc": loc, "msg": f"must be one of {', '.join(rule.options or [])}"})
            else:
                clean[name] = str(value)
        else:  # string_input
            if not isinstance(value, str):
                errors.append({"loc": loc, "msg": "must be a string"})
            elif len(value) > 10000:
                errors.append({"loc": loc, "msg": "must be at most 10000 characters"})
            elif "\0" in value:
                errors.append({"loc": loc, "msg": "must not contain NUL bytes"})
            else:
                clean[name] = value
    if errors:
        raise ManifestError(_summary(errors), errors)
    return clean


def validate_resources(manifest: Manifest, resources: Resources, partitions: list[str],
                       max_time: int) -> dict[str, Any]:
    """Apply slurm_input_rules; a resource without a rule keeps the HPC's default."""
    errors: list[dict] = []
    given = resources.model_dump(exclude_none=True)
    clean: dict[str, Any] = {}
    for name, value in given.items():
        rule = manifest.slurm_input_rules.get(name)
        loc = ["resources", name]
        if rule is None:
            errors.append({"loc": loc, "msg": "this app does not let you set it"})
            continue
        if name == "partition":
            allowed = rule.options or partitions
            if allowed and value not in allowed:
                errors.append({"loc": loc, "msg": f"must be one of {', '.join(allowed)}"})
            else:
                clean[name] = value
            continue
        number = _number(rule, value, loc, errors, integer=True)
        if number is not None:
            clean[name] = number
    for name, rule in manifest.slurm_input_rules.items():
        if name not in clean and rule.default_value is not None:
            clean[name] = rule.default_value
    if clean.get("time", 0) > max_time:
        errors.append({"loc": ["resources", "time"], "msg": f"must be at most {max_time}"})
    if errors:
        raise ManifestError(_summary(errors), errors)
    return clean


def _summary(errors: list[dict]) -> str:
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{'.'.join(map(str, first['loc']))} {first['msg']}{more}"
