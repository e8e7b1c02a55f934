"""replay admission and tenant throttle: jobs.held, jobs.admit_at, api_keys.throttle, tenants.throttle

Revision ID: 0002_replay
Revises: 0001
Create Date: 2026-12-02 04:00:00

"""
import sqlalchemy as sa
from alembic import op

from pipeline.store.models import UTCDateTime

revision = '0002_replay'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('held', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('admit_at', UTCDateTime(), nullable=True))
        batch_op.create_index('ix_jobs_held_admit_at', ['held', 'admit_at'], unique=False)
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('throttle', sa.String(length=32), nullable=True))
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('throttle', sa.String(length=32), nullable=True))


def downgrade():
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_column('throttle')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('throttle')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_held_admit_at')
        batch_op.drop_column('admit_at')
        batch_op.drop_column('held')
