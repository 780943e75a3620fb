"""The test services' PostgreSQL switch (tests/services.py, `make test-pg`): with
HPCBRIDGE_TEST_DB=postgresql a Services runs on a database of its own, which the middleware
migrates at start as in production, and which is gone after stop()."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from services import Services, local_hpc

pytestmark = pytest.mark.stack


def databases(stack, url: str) -> set[str]:
    engine = sa.create_engine(url.rsplit("/", 1)[0] + "/postgres")
    try:
        with engine.connect() as c:
            return {r[0] for r in c.execute(sa.text("SELECT datname FROM pg_database"))}
    finally:
        engine.dispose()


def test_each_services_gets_its_own_postgresql_database_dropped_at_stop(
        tmp_path, stack, monkeypatch):
    monkeypatch.setenv("HPCBRIDGE_TEST_DB", "postgresql")
    svcs = [Services(str(tmp_path / f"s{i}"), stack, auth="static",
                     static_tokens={"t-alice": "alice"}) for i in range(2)]
    try:
        for svc in svcs:
            svc.hpcs = [local_hpc(svc.data_dir)]
            svc.start(maintainer=False)
        urls = [svc.db_url for svc in svcs]
        assert all(u.startswith("postgresql+psycopg://") for u in urls) and len(set(urls)) == 2
        with svcs[0].client("t-alice") as http:
            job = http.post("jobs", json={"app": "hello", "hpc": "local"}).json()
        engine = sa.create_engine(urls[0])
        try:
            with engine.connect() as c:
                assert c.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
                assert c.execute(sa.text("SELECT id FROM job")).scalars().all() == [job["id"]]
        finally:
            engine.dispose()
        names = {u.rsplit("/", 1)[1] for u in urls}
        assert names <= databases(stack, urls[0])
    finally:
        for svc in svcs:
            svc.stop()
    assert not names & databases(stack, urls[0])
    assert not any(s.db_url for s in svcs)


def test_sqlite_stays_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv("HPCBRIDGE_TEST_DB", raising=False)
    svc = Services(str(tmp_path), auth="static")
    svc.write_config()
    assert svc.db_url == f"sqlite:///{tmp_path}/data/hpcbridge.db"
    monkeypatch.setenv("HPCBRIDGE_TEST_DB", "mysql")
    with pytest.raises(RuntimeError, match="HPCBRIDGE_TEST_DB"):
        Services(str(tmp_path / "other"), auth="static").write_config()
