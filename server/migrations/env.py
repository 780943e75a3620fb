from alembic import context
from sqlmodel import SQLModel

from hpcbridge.server import models  # noqa: F401  (registers the tables)

target_metadata = SQLModel.metadata
connection = context.config.attributes.get("connection")


def run() -> None:
    if connection is None:
        engine = context.config.attributes["engine"]
        with engine.begin() as conn:
            _migrate(conn)
    else:
        _migrate(connection)


def _migrate(conn) -> None:
    context.configure(connection=conn, target_metadata=target_metadata,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


run()
