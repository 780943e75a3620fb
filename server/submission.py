"""May this job be submitted? The rules as plain functions (no HTTP): which app and HPC,
the manifest's rules, the upload's owner, drain and quota. The handler calls `admit`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpcbridge import schemas as S
from hpcbridge.manifest import check_submission, parse_manifest, raise_for
from hpcbridge.notifyrules import Notifier, channel_problem, email_problem, webhook_problem

from . import errors as E


class JobRequest(S.JobCreate):
    """`JobCreate` as it arrives: resources are left as sent, so the manifest's rules judge
    them in the panel's words ("2" is not an integer) rather than pydantic coercing them."""

    resources: dict[str, Any] = {}


@dataclass(frozen=True)
class Admission:
    """A submission that passed every rule: what the store records."""

    app: str
    hpc: str
    params: dict[str, Any]
    resources: dict[str, Any]
    upload: str | None


def app_info(app, hpcs: dict) -> S.AppInfo:
    """An app as users see it: the configured HPCs it runs on (by id, or by scheduler type
    when the manifest names types) and the default among them."""
    manifest = parse_manifest(app.manifest)
    supported = [h for h in manifest.supported_hpc if h in hpcs] or \
        [h.id for h in hpcs.values() if h.scheduler in manifest.supported_hpc]
    default = manifest.default_hpc if manifest.default_hpc in supported else \
        (supported[0] if supported else None)
    return S.AppInfo(id=app.id, name=manifest.name, description=manifest.description,
                     kind=manifest.kind,
                     container=manifest.container, supported_hpc=supported, default_hpc=default,
                     require_upload_data=manifest.require_upload_data,
                     param_rules=manifest.param_rules,
                     slurm_input_rules=manifest.slurm_input_rules)


# what to do instead with an app of the other kind
_KIND_HINT = {"batch": "is a batch app: submit it as a job (POST /jobs)",
              "service": "is an interactive service: start it as a session (POST /sessions)"}


def find_app(store, app_id: str, kind: str = "batch"):
    """The app of that kind (batch: jobs and sweeps; service: sessions); an unknown app or
    one of the other kind is a 422."""
    app = store.get_app(app_id)
    if app is None:
        raise E.ValidationFailed(f"no app {app_id}", [{"loc": ["app"], "msg": "unknown app"}])
    actual = parse_manifest(app.manifest).kind
    if actual != kind:
        raise E.ValidationFailed(f"app {app_id} {_KIND_HINT[actual]}",
                                 [{"loc": ["app"], "msg": f"not a {kind} app"}])
    return app


def check_rules(info: S.AppInfo, hpcs: dict, request: JobRequest,
                upload_known) -> tuple[str, dict, dict]:
    """(hpc id, params, resources) under the manifest's rules; every broken rule at once
    (ManifestError). `upload_known(id)` says whether the caller owns that upload."""
    hpc_id = request.hpc or info.default_hpc
    hpc = hpcs.get(hpc_id) if hpc_id in info.supported_hpc else None
    submission = {"hpc": hpc_id or "", "params": request.params,
                  "resources": request.resources, "upload": request.upload}
    params, resources, errors = check_submission(
        info, submission, hpc.partitions if hpc else (),
        hpc.max_time_minutes if hpc else None)
    if request.upload and not upload_known(request.upload):
        errors.append({"loc": ["upload"], "msg": "unknown upload"})
    raise_for(errors)
    return hpc_id, params, resources


def check_open(store, hpc_id: str) -> None:
    if store.hpc_state(hpc_id).draining:
        raise E.Conflict(f"{hpc_id} is drained by the administrators; try again later")


def check_quota(store, user: str, default_limit: float | None) -> None:
    quota = store.quota(user, default_limit)
    if quota.limit_seconds is not None and quota.used_seconds >= quota.limit_seconds:
        raise E.QuotaExceeded(
            f"compute quota used up: {quota.used_seconds:.0f} of "
            f"{quota.limit_seconds:.0f} CPU-seconds; ask an administrator for more")


def admit(store, hpcs: dict, user: str, request: JobRequest,
          default_quota: float | None) -> Admission:
    """The submission as the store records it, or the APIError/ManifestError that refuses
    it: unknown app (422), broken rules (422), a drained HPC (409), quota used up (403)."""
    app = find_app(store, request.app)
    hpc_id, params, resources = check_rules(
        app_info(app, hpcs), hpcs, request,
        lambda upload_id: store.get_upload(upload_id, user=user) is not None)
    check_open(store, hpc_id)
    check_quota(store, user, default_quota)
    return Admission(app=app.id, hpc=hpc_id, params=params, resources=resources,
                     upload=request.upload)


def check_notify(notify: S.NotifyRequest | None, site) -> dict | None:
    """Where the end of a job (POST /jobs) or of a whole sweep (POST /sweeps) is to be told
    ({'webhook': url, 'email': address}), as the store records it, or a 422 naming every refused value: a malformed URL or address, a host the
    site does not send to (its Notifier settings), a channel the site has not set up."""
    wanted = {k: v for k, v in (notify.model_dump() if notify else {}).items() if v}
    if not wanted:
        return None
    notifier = Notifier(parent=site)
    errors = []
    for channel, value in wanted.items():
        problem = channel_problem(channel, notifier) or (
            webhook_problem(value, notifier) if channel == "webhook" else email_problem(value))
        if problem:
            errors.append({"loc": ["notify", channel], "msg": problem})
    if errors:
        raise E.ValidationFailed("; ".join(f"notify.{e['loc'][1]}: {e['msg']}"
                                           for e in errors), errors)
    return wanted
