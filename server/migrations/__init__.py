"""Schema migrations (alembic), run programmatically at start-up."""
from __future__ import annotations

import fcntl
import logging
import os

from alembic import command
from alembic.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))


def alembic_config(engine) -> Config:
    config = Config()
    config.set_main_option("script_location", HERE)
    # no sqlalchemy.url: env.py takes the engine itself, so the password never passes through
    # configparser (where a '%' breaks interpolation) nor into a traceback
    config.attributes["engine"] = engine
    return config


def upgrade(engine, revision: str = "head") -> None:
    """Upgrade the schema; concurrent starters (server, workers) take turns on SQLite."""
    database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    lock = None
    if database and database != ":memory:":  # private like the database beside it
        lock = os.fdopen(os.open(f"{database}.migrate-lock", os.O_WRONLY | os.O_CREAT, 0o600), "w")
    try:
        if lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
        with engine.begin() as connection:
            config = alembic_config(engine)
            config.attributes["connection"] = connection
            logging.getLogger("alembic").setLevel(logging.WARNING)
            command.upgrade(config, revision)
    finally:
        if lock:
            lock.close()
