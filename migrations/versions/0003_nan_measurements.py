"""probe_result.value, delta.norm, audit_finding.score may hold NaN (stored as NULL)

A broken model measures NaN (perplexity overflow, diverged norms); SQLite stores NaN as NULL,
which the NOT NULL constraints refused, failing the step. ``ledger.schema.MeasuredFloat`` writes
NaN as NULL and reads NULL back as NaN.

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

COLUMNS = [('probe_result', 'value'), ('delta', 'norm'), ('audit_finding', 'score')]


def upgrade() -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    for table, column in COLUMNS:
        op.execute(f"UPDATE {table} SET {column} = 'NaN' WHERE {column} IS NULL")  # best effort
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=sa.Float(), nullable=False)
