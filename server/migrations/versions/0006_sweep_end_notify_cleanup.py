"""a sweep's end: its notify, ended_at, cleaned_at; notification.sweep_id; upload.size 64-bit

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

A sweep is told once, when its last element ends (issue #24/#25 follow-ups): the request's
`notify`, the time the sweep ended (set once, with its outbox rows) and the time its HPC
folder was dealt with; the outbox row of a sweep names it; an index on job (sweep_id,
status) for the "is any element still active" check of every element's end. `upload.size` was a 32-bit
INTEGER on PostgreSQL: an upload over 2 GiB did not fit (SQLite's INTEGER is 64-bit: the
type changes there only so that the schema reads as the models declare).
Sweeps that had already ended get their ended_at (so they are neither told nor counted as
running) and are left with cleaned_at unset: their folders are removed by the site's
cleanup setting, as those of sweeps ending from now on.
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

FK = 'fk_notification_sweep_id_sweep'
FINAL = ('succeeded', 'failed', 'cancelled')


def upgrade() -> None:
    with op.batch_alter_table('sweep', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notify', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('ended_at', sqlmodel.sql.sqltypes.UTCDateTime(),
                                      nullable=True))
        batch_op.add_column(sa.Column('cleaned_at', sqlmodel.sql.sqltypes.UTCDateTime(),
                                      nullable=True))
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sweep_id', sqlmodel.sql.sqltypes.AutoString(),
                                      nullable=True))
        batch_op.create_index(batch_op.f('ix_notification_sweep_id'), ['sweep_id'],
                              unique=False)
        batch_op.create_foreign_key(FK, 'sweep', ['sweep_id'], ['id'])
    with op.batch_alter_table('upload', schema=None) as batch_op:
        batch_op.alter_column('size', type_=sa.BigInteger(), existing_type=sa.Integer(),
                              existing_nullable=False)
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.create_index('ix_job_sweep_id_status', ['sweep_id', 'status'], unique=False)
    # sweeps every element of which is already final ended when their last one did
    final = ", ".join(f"'{s}'" for s in FINAL)
    op.execute(sa.text(
        "UPDATE sweep SET ended_at = (SELECT max(coalesce(job.finished_at, job.updated_at)) "
        "FROM job WHERE job.sweep_id = sweep.id) "
        "WHERE EXISTS (SELECT 1 FROM job WHERE job.sweep_id = sweep.id) "
        f"AND NOT EXISTS (SELECT 1 FROM job WHERE job.sweep_id = sweep.id "
        f"AND job.status NOT IN ({final}))"))


def downgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index('ix_job_sweep_id_status')
    with op.batch_alter_table('upload', schema=None) as batch_op:
        batch_op.alter_column('size', type_=sa.Integer(), existing_type=sa.BigInteger(),
                              existing_nullable=False)
    op.execute(sa.text("DELETE FROM notification WHERE sweep_id IS NOT NULL"))
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_constraint(FK, type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_notification_sweep_id'))
        batch_op.drop_column('sweep_id')
    with op.batch_alter_table('sweep', schema=None) as batch_op:
        batch_op.drop_column('cleaned_at')
        batch_op.drop_column('ended_at')
        batch_op.drop_column('notify')
