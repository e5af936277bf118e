"""Tensor fingerprints name their algorithm: "sha256:<hex>" for every one written before, new ones
"xxh3-128:<hex>"

A checkout verifies every touched tensor against its recorded fingerprint. sha256 of a 5 MB tensor
cost more than the rest of a checkout, so new versions record xxh3-128 (memory speed; see
``simulator.deltas``). Each fingerprint names its algorithm, as container digests do, so a
marker or an export that copies fingerprints carries the algorithm with them, and a version
recorded before keeps verifying with sha256. This revision rewrites the old bare values to the
named form; it also keeps an older editledger, which could not verify xxh3-128, from opening a
ledger that may hold such fingerprints (it refuses a schema it does not know).

Downgrade strips the "sha256:" names again, and refuses while any version holds a fingerprint of
another algorithm (an older editledger would report it as a corrupt checkout).

Revision ID: 0006
Revises: 0005 (written beside 0005 on another branch; re-chained after it at the merge)
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ledger.errors import SchemaError

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

VERSION = sa.table("version", sa.column("id", sa.Integer), sa.column("tensor_fingerprints", sa.JSON))
BATCH = 1000


def _rewrite(fix) -> None:
    """Apply ``fix`` (fingerprints -> new fingerprints or None for unchanged) to every version row."""
    conn = op.get_bind()
    last = 0
    while True:
        rows = conn.execute(sa.select(VERSION.c.id, VERSION.c.tensor_fingerprints)
                            .where(VERSION.c.id > last).order_by(VERSION.c.id).limit(BATCH)).all()
        if not rows:
            return
        changes = []
        for vid, fps in rows:
            new = fix(dict(fps or {}), vid)
            if new is not None:
                changes.append({"vid": vid, "fps": new})
        if changes:
            conn.execute(VERSION.update().where(VERSION.c.id == sa.bindparam("vid"))
                         .values(tensor_fingerprints=sa.bindparam("fps")), changes)
        last = rows[-1][0]


def upgrade() -> None:
    def name_them(fps: dict, vid: int):
        if all(":" in fp for fp in fps.values()):
            return None
        return {k: fp if ":" in fp else f"sha256:{fp}" for k, fp in fps.items()}
    _rewrite(name_them)


def downgrade() -> None:
    conn = op.get_bind()
    other = []
    for vid, fps in conn.execute(sa.select(VERSION.c.id, VERSION.c.tensor_fingerprints).order_by(VERSION.c.id)):
        if any(":" in fp and not fp.startswith("sha256:") for fp in (fps or {}).values()):
            other.append(vid)
    if other:
        raise SchemaError(
            f"cannot take this ledger below schema 0006: {len(other)} version(s) ({', '.join(map(str, other[:10]))}"
            f"{' …' if len(other) > 10 else ''}) hold xxh3-128 fingerprints, which an editledger before 0006 "
            "cannot verify. Keep the ledger at 0006 or later (use an editledger that knows it).")

    def strip(fps: dict, vid: int):
        if not any(fp.startswith("sha256:") for fp in fps.values()):
            return None
        return {k: fp.removeprefix("sha256:") for k, fp in fps.items()}
    _rewrite(strip)
