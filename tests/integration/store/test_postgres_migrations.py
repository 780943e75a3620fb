"""Alembic on the stack's PostgreSQL, beyond test_postgres.py's upgrade-from-empty and
base round trip: every revision steps down and up again, the migrated schema is exactly
what the models declare, and services starting together on an empty database (a
middleware and its workers at a site's first start) all come up on one schema.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from hpcbridge.server import models  # noqa: F401  (registers the tables)
from hpcbridge.server.migrations import alembic_config, upgrade
from hpcbridge.server.store import Store

pytestmark = pytest.mark.stack


def schema(engine) -> dict[str, tuple]:
    """Each table's columns (name, type, nullable), indexes and unique constraints."""
    inspector = sa.inspect(engine)
    out = {}
    for table in inspector.get_table_names():
        columns = tuple((c["name"], str(c["type"]), c["nullable"])
                        for c in inspector.get_columns(table))
        indexes = tuple(sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                               for i in inspector.get_indexes(table)))
        uniques = tuple(sorted(tuple(u["column_names"])
                               for u in inspector.get_unique_constraints(table)))
        out[table] = (columns, indexes, uniques)
    return out


def run(engine, fn, *args) -> None:
    """An alembic command in one transaction, as server/migrations.upgrade runs it."""
    with engine.begin() as connection:
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        fn(config, *args)


def current(engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_every_revision_steps_down_and_up_to_the_same_schema(pg_url):
    engine = sa.create_engine(pg_url)
    try:
        script = ScriptDirectory.from_config(alembic_config(engine))
        revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
        assert len(revisions) >= 4, revisions
        seen = {}
        for rev in revisions:  # up one at a time from empty
            upgrade(engine, rev)
            assert current(engine) == rev
            seen[rev] = schema(engine)
        for rev in reversed(revisions[:-1]):  # down one at a time: each step undoes one
            run(engine, command.downgrade, "-1")
            assert current(engine) == rev
            assert schema(engine) == seen[rev], f"downgrade to {rev} left another schema"
        run(engine, command.downgrade, "base")
        assert current(engine) is None
        assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(engine)
        assert schema(engine) == seen[revisions[-1]]
    finally:
        engine.dispose()


def test_the_migrated_schema_is_what_the_models_declare(pg_url):
    """A model changed without a migration (or the reverse) shows here, on PostgreSQL's
    types, before a site's production database finds it."""
    store = Store(pg_url)
    try:
        with store.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, SQLModel.metadata)
        assert diff == [], diff
    finally:
        store.close()


STARTER = """
import sys
from hpcbridge.server.store import Store
Store(sys.argv[1]).close()
"""


def test_services_starting_together_on_an_empty_database_all_come_up(pg_url):
    """Five processes migrate one empty database at once (as `hpcbridge server` and the
    maintainer workers do at a first start): all start, the schema is made once."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    procs = [subprocess.Popen([sys.executable, "-c", STARTER, pg_url], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(5)]
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        outputs.append((proc.returncode, out[-2000:]))
    assert [code for code, _ in outputs] == [0] * 5, outputs
    engine = sa.create_engine(pg_url)
    try:
        script = ScriptDirectory.from_config(alembic_config(engine))
        assert current(engine) == script.get_current_head()
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        engine.dispose()
