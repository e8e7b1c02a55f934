"""Drop jobs.task_id and jobs.dispatched_at: neither was read (task_id held the last claim's
owner, which the lease owner holds while a step runs; dispatched_at was never written).

Revision ID: 0003_dead_columns
Revises: 0002_replay
"""
import sqlalchemy as sa
from alembic import op

from pipeline.store.models import UTCDateTime

revision = '0003_dead_columns'
down_revision = '0002_replay'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('dispatched_at')
        batch_op.drop_column('task_id')


def downgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('task_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('dispatched_at', UTCDateTime(), nullable=True))
