"""Schema migrations (alembic), run programmatically at start-up."""
from __future__ import annotations

import fcntl
import logging
import os

from alembic import command
from alembic.config import Config
from sqlalchemy import text

HERE = os.path.dirname(os.path.abspath(__file__))
# any fixed 64-bit number, the same in every process: the key of the migration lock
PG_MIGRATION_LOCK = 0x6870_6362_7269_6467  # "hpcbridg"


def alembic_config(engine) -> Config:
    config = Config()
    config.set_main_option("script_location", HERE)
    # no sqlalchemy.url: env.py takes the engine itself, so the password never passes through
    # configparser (where a '%' breaks interpolation) nor into a traceback
    config.attributes["engine"] = engine
    return config


def upgrade(engine, revision: str = "head") -> None:
    """Upgrade the schema; concurrent starters (server, workers) take turns: a file lock on
    SQLite, a transaction-scoped advisory lock on PostgreSQL (without it, processes starting
    together on an empty database all created the tables and all but one failed at start)."""
    database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    lock = None
    if database and database != ":memory:":  # private like the database beside it
        lock = os.fdopen(os.open(f"{database}.migrate-lock", os.O_WRONLY | os.O_CREAT, 0o600), "w")
    try:
        if lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
        with engine.begin() as connection:
            if engine.url.get_backend_name() == "postgresql":  # released at commit
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": PG_MIGRATION_LOCK})
            config = alembic_config(engine)
            config.attributes["connection"] = connection
            logging.getLogger("alembic").setLevel(logging.WARNING)
            command.upgrade(config, revision)
    finally:
        if lock:
            lock.close()
