"""Helpers of the maintainer's unit tests: a site config with one local HPC, and apps and
jobs written straight into a store."""
from __future__ import annotations

from traitlets.config import Config

from hpcbridge.server.models import App
from hpcbridge.server.store import Store

HELLO = {"name": "hello", "execution_stage": "echo hi > result/hi", "supported_hpc": ["local"]}


def site_config(tmp_path, **maintainer) -> Config:
    c = Config()
    c.Site.data_dir = str(tmp_path / "data")
    c.Site.apps = []
    c.Site.hpcs = [{"id": "local", "scheduler": "local", "capacity": 2, "poll_interval": 0.2,
                    "work_root": str(tmp_path / "work")}]
    for name, value in maintainer.items():
        setattr(c.Maintainer, name, value)
    return c


def add_app(store: Store, tmp_path, manifest: dict | None = None, app_id: str = "hello") -> App:
    """An app in the store, its folder with one file, with `manifest` stored as it is
    (unchecked: as an older version of the rules may have let it in)."""
    folder = tmp_path / "data" / "apps" / app_id  # the artifact store (site_config)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.sh").write_text("echo hi\n")
    app = App(id=app_id, name=app_id, source=str(folder), path=str(folder),
              manifest=manifest if manifest is not None else dict(HELLO))
    return store.put_app(app)


def new_job(store: Store, app: str = "hello", user: str = "alice", **fields):
    return store.create_job(user=user, app=app, hpc="local", params={}, resources={},
                            **fields)


def events(store: Store, job_id: str) -> list[str]:
    return [e.type for e in store.events(job_id)]
