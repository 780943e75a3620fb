"""Applications: folders or git repositories with a manifest.json, registered in the store."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

from hpcbridge.artifacts import APP_IGNORED, SNAPSHOT_FILE, ArtifactStore, app_digest
from hpcbridge.manifest import Manifest, parse_manifest

from .errors import ValidationFailed
from .models import App


def app_id_from(source: str) -> str:
    base = os.path.basename(source.rstrip("/")).removesuffix(".git").lower()
    return re.sub(r"[^a-z0-9_-]+", "-", base).strip("-")[:63] or "app"


def read_manifest(folder: str) -> Manifest:
    path = os.path.join(folder, "manifest.json")
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ValidationFailed("the application has no manifest.json",
                               [{"loc": ["source"], "msg": "no manifest.json"}]) from None
    except (ValueError, OSError) as exc:  # bad JSON or UTF-8, unreadable
        raise ValidationFailed(f"manifest.json cannot be read: {exc}",
                               [{"loc": ["manifest"], "msg": str(exc)}]) from None
    if not isinstance(data, dict):
        raise ValidationFailed("manifest.json must hold an object")
    return parse_manifest(data)


def fetch_app(source: str, artifacts: ArtifactStore, app_id: str | None = None) -> App:
    """Snapshot an application into the artifact store (blocking): a local folder is copied
    (again only when it changed), a git URL cloned. Every host stages from the snapshot."""
    app_id = app_id or app_id_from(source)
    if os.path.isdir(source):
        _snapshot_folder(os.path.abspath(source), artifacts, app_id)
    else:
        if not re.match(r"^(https?|git|ssh|file)://", source) and not source.endswith(".git"):
            raise ValidationFailed("source must be a folder on the middleware or a git URL",
                                   [{"loc": ["source"], "msg": "not a folder or git URL"}])
        with artifacts.writing("apps", app_id) as tmp:
            result = subprocess.run(["git", "clone", "--depth", "1", "--", source, tmp],
                                    capture_output=True, text=True, timeout=300)
            if result.returncode != 0:
                raise ValidationFailed(f"git clone failed: {result.stderr.strip()[-500:]}",
                                       [{"loc": ["source"], "msg": "git clone failed"}])
            read_manifest(tmp)
            _make_private(tmp)
    folder = artifacts.path("apps", app_id)
    manifest = read_manifest(folder)
    return App(id=app_id, name=manifest.name, source=source, path=folder,
               manifest=manifest.model_dump(exclude_none=True))


def _snapshot_folder(source: str, artifacts: ArtifactStore, app_id: str) -> None:
    read_manifest(source)  # a folder without a valid manifest replaces no snapshot
    digest = app_digest(source)
    stamp = json.dumps({"source": source, "digest": digest})
    try:
        with open(os.path.join(artifacts.path("apps", app_id), SNAPSHOT_FILE)) as f:
            if json.load(f).get("digest") == digest:
                return  # unchanged: every middleware's start-up finds it so
    except (OSError, ValueError):
        pass
    with artifacts.writing("apps", app_id) as tmp:
        shutil.copytree(source, tmp, symlinks=True, dirs_exist_ok=True,
                        ignore=lambda _top, names: [n for n in names if n in APP_IGNORED])
        with open(os.path.join(tmp, SNAPSHOT_FILE), "w") as f:
            f.write(stamp)
        _make_private(tmp)


def _make_private(folder: str) -> None:
    """The service's files are its own (docs/security.md): a copy keeps only the owner's
    bits of the source's modes (an executable stays executable)."""
    for top, _dirs, files in os.walk(folder):
        os.chmod(top, 0o700)
        for name in files:
            full = os.path.join(top, name)
            if not os.path.islink(full):
                os.chmod(full, os.stat(full).st_mode & 0o700)
