"""sweep: a named grid of runs; run.sweep_id and run.sweep_cell tag a run as one cell of a sweep

``editledger sweep GRID`` records each cell of a grid (model x method x stream x protocol x seed) as
a run tagged with its sweep and the cell's key, the sha256 of the cell's canonical configuration. A
re-run finds the cell's run by (sweep, key) through the unique constraint's index: it skips a done
cell and resumes an interrupted one. The constraint also makes the database refuse a second run
for one cell, so two workers (or two sweeps started at once) never both record it.

Downgrade drops the columns and the table; the runs stay, untagged.

Revision ID: 0007
Revises: 0006
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'sweep',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('grid', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sweep')),
        sa.UniqueConstraint('name', name=op.f('uq_sweep_name')),
    )
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sweep_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('sweep_cell', sa.String(length=64), nullable=True))
        batch_op.create_foreign_key(op.f('fk_run_sweep_id_sweep'), 'sweep', ['sweep_id'], ['id'])
        batch_op.create_unique_constraint(op.f('uq_run_sweep_id_sweep_cell'), ['sweep_id', 'sweep_cell'])


def downgrade() -> None:
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('uq_run_sweep_id_sweep_cell'), type_='unique')
        batch_op.drop_constraint(op.f('fk_run_sweep_id_sweep'), type_='foreignkey')
        batch_op.drop_column('sweep_cell')
        batch_op.drop_column('sweep_id')
    op.drop_table('sweep')
