"""probe_result: a covering index for trajectories and the timeline's efficacy column

(run_id, suite, metric, step) became (run_id, suite, metric, step, version_id, against, value):
reading a 10,000-point trajectory no longer looks up each row in the table.

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('probe_result', schema=None) as batch_op:
        batch_op.drop_index('ix_probe_result_run_id_suite_metric_step')
        batch_op.create_index('ix_probe_result_trajectory',
                              ['run_id', 'suite', 'metric', 'step', 'version_id', 'against', 'value'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('probe_result', schema=None) as batch_op:
        batch_op.drop_index('ix_probe_result_trajectory')
        batch_op.create_index('ix_probe_result_run_id_suite_metric_step',
                              ['run_id', 'suite', 'metric', 'step'], unique=False)
