"""sbatch attempts and idempotency keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('job') as batch:
        # set before the scheduler is asked to submit: only such a job needs a lookup by name
        batch.add_column(sa.Column('submit_attempted_at', sa.DateTime(), nullable=True))
        # a client's retry of a cut POST /jobs carries the same key and gets the same job
        batch.add_column(sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(),
                                   nullable=True))
        batch.create_index('ix_job_user_idempotency_key', ['user', 'idempotency_key'],
                           unique=True)


def downgrade() -> None:
    with op.batch_alter_table('job') as batch:
        batch.drop_index('ix_job_user_idempotency_key')
        batch.drop_column('idempotency_key')
        batch.drop_column('submit_attempted_at')
