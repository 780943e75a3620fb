"""Fixtures of the maintainer's unit tests: a store on a temporary SQLite file, and a real
maintainer Runtime on it (an embedded Redis, the local handler) that no worker runs: a test
drives its tasks and poll cycles itself. Helpers: maintainer_helpers.py."""
from __future__ import annotations

import os

import pytest
from maintainer_helpers import site_config

from hpcbridge.config import Site
from hpcbridge.server.store import Store


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'db.sqlite'}")


@pytest.fixture
def runtime(tmp_path):
    """A maintainer Runtime (store, embedded Redis, the local handler), closed after."""
    from hpcbridge.maintainer.runtime import Runtime
    rt = Runtime(Site(config=site_config(tmp_path)), worker_id="test-worker")
    yield rt
    rt.close()


@pytest.fixture
def workdir_files(tmp_path):
    """Every file under the local HPC's work root, relative to it (hidden state skipped)."""
    def files() -> list[str]:
        root = tmp_path / "work"
        return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                      if p.is_file() and not any(part.startswith(".") for part in
                                                 p.relative_to(root).parts)) \
            if os.path.isdir(root) else []
    return files
