"""delta.kind and artifact.kind may be 'state': a step's addition to its method's state

A version is base weights + weight deltas + method state (a GRACE codebook, an IKE memory, ...).
A step's state delta is stored like a weight delta: a content-addressed safetensors artifact (its
tensors, with the JSON part in the header) referenced by a ``delta`` row whose ``tensor`` is the
state's name ("@" + method), so lineage, revert and fsck treat both alike.

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

OLD_DELTA = "kind IN ('low_rank', 'dense', 'sparse', 'adapter', 'keyframe')"
NEW_DELTA = "kind IN ('low_rank', 'dense', 'sparse', 'adapter', 'keyframe', 'state')"
OLD_ARTIFACT = "kind IN ('delta', 'keyframe', 'stats', 'other')"
NEW_ARTIFACT = "kind IN ('delta', 'keyframe', 'stats', 'other', 'state')"


def _swap(table: str, condition: str) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.drop_constraint(op.f(f"ck_{table}_kind"), type_="check")
        batch_op.create_check_constraint(op.f(f"ck_{table}_kind"), condition)


def upgrade() -> None:
    _swap("delta", NEW_DELTA)
    _swap("artifact", NEW_ARTIFACT)


def downgrade() -> None:
    op.execute("DELETE FROM delta WHERE kind = 'state'")
    op.execute("UPDATE artifact SET kind = 'other' WHERE kind = 'state'")
    _swap("delta", OLD_DELTA)
    _swap("artifact", OLD_ARTIFACT)
