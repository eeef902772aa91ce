"""metrics: an index by (job_id, step), for the points past a step of every series

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 23:20:00
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.create_index('ix_metrics_job_step', ['job_id', 'step'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.drop_index('ix_metrics_job_step')
