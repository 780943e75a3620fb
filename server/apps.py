"""Applications: folders or git repositories with a manifest.json, registered in the store."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile

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


def fetch_app(source: str, apps_dir: str, app_id: str | None = None) -> App:
    """Register a local folder in place, or clone a git URL into apps_dir (blocking)."""
    app_id = app_id or app_id_from(source)
    if os.path.isdir(source):
        folder = os.path.abspath(source)
    else:
        if not re.match(r"^(https?|git|ssh|file)://", source) and not source.endswith(".git"):
            raise ValidationFailed("source must be a folder on the middleware or a git URL",
                                   [{"loc": ["source"], "msg": "not a folder or git URL"}])
        os.makedirs(apps_dir, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=apps_dir, prefix=".clone-")
        try:
            result = subprocess.run(["git", "clone", "--depth", "1", "--", source, tmp],
                                    capture_output=True, text=True, timeout=300)
            if result.returncode != 0:
                raise ValidationFailed(f"git clone failed: {result.stderr.strip()[-500:]}",
                                       [{"loc": ["source"], "msg": "git clone failed"}])
            read_manifest(tmp)
            folder = os.path.join(apps_dir, app_id)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    manifest = read_manifest(folder)
    return App(id=app_id, name=manifest.name, source=source, path=folder,
               manifest=manifest.model_dump(exclude_none=True))
