"""job.submit_attempted_at with its time zone, like every other time column

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

0002 added it as a plain DateTime while the model (and every other time column) is
sqlmodel's UTCDateTime: on PostgreSQL a `timestamp without time zone`, into which an aware
UTC time is converted at the server's TimeZone, so the time read back was shifted on any
server not set to UTC (found by comparing the migrated schema with the models on PostgreSQL).
SQLite stores both types alike: nothing to do there, and no table copy at a site's upgrade.
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    # PostgreSQL's own cast reads the old values at the server's TimeZone: the inverse of
    # how they were written
    op.alter_column('job', 'submit_attempted_at', type_=sqlmodel.sql.sqltypes.UTCDateTime(),
                    existing_type=sa.DateTime(), existing_nullable=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.alter_column('job', 'submit_attempted_at', type_=sa.DateTime(),
                    existing_type=sqlmodel.sql.sqltypes.UTCDateTime(), existing_nullable=True)
