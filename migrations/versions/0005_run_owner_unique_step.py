"""version: (run_id, step) is unique; run: a lease naming its one writer

Two replays of one run recorded the same step numbers twice (33 versions for 20 steps), and a reset
followed by a resume reused a step number. From this revision a run has one owner at a time (the
process that holds its lease: host, process id and start time, renewed on every step) and the
database refuses a second version with the same step in a run.

A ledger written before this revision may already hold such duplicates. The upgrade keeps the
first version of each duplicated step (lowest id) and gives the others fresh step numbers after the
run's last one, in the order they were written, with a note saying what their step was; nothing is
deleted and every parent link (by id) stays as it was. The downgrade drops the constraint and the
lease columns (step numbers stay as they are).

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

NOTE = "renumbered by schema upgrade 0005: step {old} was recorded twice in this run (two writers)"


def _renumber_duplicates() -> None:
    bind = op.get_bind()
    dups = bind.execute(sa.text(
        "SELECT run_id, step FROM version WHERE run_id IS NOT NULL "
        "GROUP BY run_id, step HAVING COUNT(*) > 1 ORDER BY run_id, step")).all()
    for run_id, step in dups:
        ids = bind.execute(sa.text("SELECT id FROM version WHERE run_id = :r AND step = :s ORDER BY id"),
                           {"r": run_id, "s": step}).scalars().all()
        for vid in ids[1:]:
            new = bind.execute(sa.text("SELECT MAX(step) FROM version WHERE run_id = :r"),
                               {"r": run_id}).scalar() + 1
            note = NOTE.format(old=step)
            bind.execute(sa.text("UPDATE version SET step = :n, note = CASE WHEN note IS NULL THEN :t "
                                 "ELSE note || ' (' || :t || ')' END WHERE id = :v"),
                         {"n": new, "t": note, "v": vid})
            bind.execute(sa.text("UPDATE probe_result SET step = :n WHERE version_id = :v"), {"n": new, "v": vid})
            bind.execute(sa.text("UPDATE run SET step_count = :n WHERE id = :r AND step_count < :n"),
                         {"n": new, "r": run_id})


def upgrade() -> None:
    _renumber_duplicates()
    with op.batch_alter_table('version', schema=None) as batch_op:
        batch_op.drop_index(op.f('ix_version_run_id_step'))
        batch_op.create_unique_constraint(op.f('uq_version_run_id_step'), ['run_id', 'step'])
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner_host', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('owner_pid', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('owner_started', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('owner_token', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('lease_renewed_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.drop_column('lease_renewed_at')
        batch_op.drop_column('owner_token')
        batch_op.drop_column('owner_started')
        batch_op.drop_column('owner_pid')
        batch_op.drop_column('owner_host')
    with op.batch_alter_table('version', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('uq_version_run_id_step'), type_='unique')
        batch_op.create_index(op.f('ix_version_run_id_step'), ['run_id', 'step'], unique=False)
