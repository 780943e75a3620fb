"""CyberGIS-Compute's words for hpcbridge's things, and back (pure: no HTTP, no store).

What `cybergis-compute-client` 0.2.6 sends and expects: a token `base64("<hub host>@<token>")`,
Slurm inputs in Slurm's own spellings (`time: "01:30:00"`, `memory: "512MB"`), job objects
with `events[]`/`logs[]`, event types such as JOB_QUEUED … JOB_ENDED / JOB_FAILED.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import re
import urllib.parse
from typing import Any

from hpcbridge.clock import aware

from .. import errors as E

MAINTAINER = "community_contribution"  # the client's default maintainer: the one we offer

# hpcbridge status (or event type) → CyberGIS event type; the client stops following a
# job at JOB_ENDED or JOB_FAILED, so every final status maps to one of them
EVENT_TYPES = {
    "queued": "JOB_QUEUED",
    "staging": "JOB_REGISTERED",
    "submitted": "JOB_INIT",
    "running": "JOB_RUNNING",
    "finishing": "JOB_FINISHING",
    "succeeded": "JOB_ENDED",
    "failed": "JOB_FAILED",
    "cancelled": "JOB_FAILED",
}
TERMINAL = frozenset({"JOB_ENDED", "JOB_FAILED"})

# the client's job form always sends these, whether the app has a rule for them or not
CLIENT_DEFAULTS = {"time": "01:00:00", "num_of_task": 1, "cpu_per_task": 1}
# hpcbridge resource → the CyberGIS Slurm input shown for it (the client's form fields)
# the resource each of those defaults sets
SLURM_OF = {"time": "time", "num_of_task": "cpus", "cpu_per_task": "cpus"}
SLURM_NAMES = {"time": "time", "cpus": "cpu_per_task", "memory": "memory", "gpus": "gpus",
               "partition": "partition"}
UNSUPPORTED_SLURM = ("gpus_per_socket", "gpus_per_task", "memory_per_gpu", "modules")
MEMORY_UNITS_MB = {"": 1, "k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}


def iso(value: dt.datetime | None) -> str | None:
    """A time as CyberGIS writes it: ISO 8601 UTC with a Z."""
    if value is None:
        return None
    return aware(value).astimezone(dt.timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


# --- who is calling ------------------------------------------------------------------------
def normalize_host(host: str) -> str:
    """`http://Hub.example.org:8000/` → `hub.example.org:8000`: the client sends the host
    with or without a scheme (and some with a trailing slash)."""
    host = host.strip()
    if "://" in host:
        host = urllib.parse.urlsplit(host).netloc
    return host.split("/", 1)[0].lower()


def host_of_url(url: str) -> str | None:
    """The host[:port] of a URL (the hub API URL the authenticator uses), else None."""
    netloc = urllib.parse.urlsplit(url).netloc if url else ""
    return netloc.lower() or None


def decode_token(value: Any) -> tuple[str, str]:
    """(normalized hub host, hub token) from `jupyterhubApiToken`; Unauthorized if it is
    missing or not `base64("<host>@<token>")`. Neither part ever reaches a message."""
    if not isinstance(value, str) or not value:
        raise E.Unauthorized("missing jupyterhubApiToken: log in with "
                             "CyberGISCompute.login()")
    try:
        text = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise E.Unauthorized("jupyterhubApiToken is not base64 of <hub host>@<token>"
                             ) from None
    host, sep, token = text.rpartition("@")
    host = normalize_host(host)
    if not sep or not host or not token.strip():
        raise E.Unauthorized("jupyterhubApiToken is not base64 of <hub host>@<token>")
    return host, token.strip()


# --- Slurm inputs ↔ resources --------------------------------------------------------------
_TIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)b?", re.IGNORECASE)


def parse_time(value: Any) -> int:
    """Minutes (rounded up) of a Slurm time: a number of minutes, "MM", "MM:SS",
    "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS". ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("must be minutes or a Slurm time such as 01:30:00")
    if isinstance(value, (int, float)) and math.isfinite(value) and value >= 0:
        return math.ceil(value)
    match = _TIME.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError("must be minutes or a Slurm time such as 01:30:00")
    days, a, b, c = match.groups()
    parts = [int(a)] + [int(x) for x in (b, c) if x is not None]
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = int(days) * 86400 + sum(p * m for p, m in zip(parts, (3600, 60, 1)))
    elif len(parts) == 3:
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    elif len(parts) == 2:
        seconds = parts[0] * 60 + parts[1]
    else:
        seconds = parts[0] * 60
    return math.ceil(seconds / 60)


def parse_memory(value: Any) -> int:
    """Megabytes (rounded up) of a Slurm memory size: a number of MB, or "512MB", "4G",
    "1024K". ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("must be megabytes or a size such as 512MB or 4GB")
    if isinstance(value, (int, float)) and math.isfinite(value) and value >= 0:
        return math.ceil(value)
    match = _MEMORY.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError("must be megabytes or a size such as 512MB or 4GB")
    return math.ceil(float(match.group(1)) * MEMORY_UNITS_MB[match.group(2).lower()])


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or \
            not str(value).strip().isdigit():
        raise ValueError("must be a whole number")
    return int(value)


def _notify_of(slurm: dict) -> dict | None:
    """Slurm's mail_user (with END or FAIL in mail_type) as hpcbridge's `notify`."""
    users = slurm.get("mail_user")
    users = [users] if isinstance(users, str) else users
    types = slurm.get("mail_type") or ["END", "FAIL"]
    types = [types] if isinstance(types, str) else types
    if not users or not isinstance(users, list) or not isinstance(users[0], str):
        return None
    if not {"END", "FAIL", "ALL"} & {str(t).upper() for t in types}:
        return None
    return {"email": users[0]}


def _slurm_value(name: str, value: Any, out: dict) -> None:
    """Put one Slurm input into `out` (resource names); ValueError says what is wrong."""
    if name == "time":
        out["time"] = parse_time(value)
    elif name in ("num_of_task", "cpu_per_task"):
        out[name] = _count(value)
    elif name == "memory":
        out["memory"] = parse_memory(value)
    elif name == "memory_per_cpu":
        out["memory_per_cpu"] = parse_memory(value)
    elif name in ("gpus", "gpus_per_node"):
        out["gpus"] = _count(value)
    elif name == "partition":
        out["partition"] = value  # the manifest's rule judges it
    elif name == "num_of_node":
        if _count(value) != 1:
            raise ValueError("must be 1: an hpcbridge job runs on one node")
    elif name in UNSUPPORTED_SLURM:
        raise ValueError("is not supported by hpcbridge")
    elif name not in ("mail_user", "mail_type"):
        raise ValueError("is not a Slurm input CyberGIS-Compute knows")


def slurm_to_resources(slurm: dict | None, ruled: set[str]) -> tuple[dict, dict | None]:
    """(hpcbridge resources, notify) of CyberGIS Slurm inputs. `ruled` holds the resource
    names the app has rules for: an input the client's form sends by default is dropped
    when the app has no rule for it. ValidationFailed lists every input it cannot read."""
    slurm = slurm or {}
    raw: dict[str, Any] = {}
    errors = []
    for name, value in slurm.items():
        if value is None or (name in CLIENT_DEFAULTS and CLIENT_DEFAULTS[name] == value
                             and SLURM_OF[name] not in ruled):
            continue
        try:
            _slurm_value(name, value, raw)
        except ValueError as exc:
            errors.append({"loc": ["slurm", name], "msg": str(exc)})
    if errors:
        raise E.ValidationFailed(f"slurm.{errors[0]['loc'][1]} {errors[0]['msg']}", errors)
    tasks, per_task = raw.pop("num_of_task", None), raw.pop("cpu_per_task", None)
    if tasks is not None or per_task is not None:
        raw["cpus"] = (tasks or 1) * (per_task or 1)  # one node, one task: all its CPUs
    per_cpu = raw.pop("memory_per_cpu", None)
    if per_cpu is not None and "memory" not in raw:
        raw["memory"] = per_cpu * raw.get("cpus", 1)
    return raw, _notify_of(slurm)



def resources_to_slurm(resources: dict) -> dict:
    """hpcbridge resources in CyberGIS's Slurm spellings (for job objects)."""
    out: dict[str, Any] = {}
    if resources.get("time") is not None:
        minutes = int(resources["time"])
        out["time"] = f"{minutes // 60:02d}:{minutes % 60:02d}:00"
    if resources.get("cpus") is not None:
        out.update(num_of_task=1, cpu_per_task=resources["cpus"])
    if resources.get("memory") is not None:
        out["memory"] = f"{resources['memory']}MB"
    for name in ("gpus", "partition"):
        if resources.get(name) is not None:
            out[name] = resources[name]
    return out


def coerce_params(param: dict | None, rules: dict) -> dict:
    """CyberGIS sends parameter values as text as often as not: a number or boolean rule's
    value written as text becomes the number or boolean (the manifest's rules then judge
    it, as they do every value); anything else is left as sent."""
    out = dict(param or {})
    for name, value in out.items():
        rule = rules.get(name)
        if rule is None or not isinstance(value, str):
            continue
        text = value.strip()
        if rule.type in ("integer", "float"):
            try:
                number = float(text)
            except ValueError:
                continue
            if math.isfinite(number):
                out[name] = int(number) if rule.type == "integer" and number.is_integer() \
                    and "." not in text and "e" not in text.lower() else number
        elif rule.type == "boolean" and text.lower() in ("true", "false"):
            out[name] = text.lower() == "true"
    return out


def error_messages(details: list[dict] | None) -> list[str]:
    """Each field error in CyberGIS's words: params → param.<n>, resources → slurm.<n>."""
    out = []
    for d in details or []:
        loc = [str(p) for p in d.get("loc", [])]
        if loc[:1] == ["params"]:
            loc[0] = "param"
        elif loc[:1] == ["resources"]:
            loc = ["slurm", *(SLURM_NAMES.get(p, p) for p in loc[1:])]
        elif loc[:1] == ["notify"]:
            loc = ["slurm", "mail_user"]
        elif loc[:1] == ["upload"]:
            loc = ["localDataFolder"]
        elif loc[:1] == ["app"]:
            loc = ["localExecutableFolder", "gitId"]
        out.append(f"{'.'.join(loc)} {d.get('msg', '')}".strip())
    return out
