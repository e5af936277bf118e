"""The ledger on PostgreSQL. Needs a server: set EDITLEDGER_TEST_PG_URL to an SQLAlchemy URL of an
*empty, disposable* database (every table in it is dropped), e.g.
``postgresql+psycopg://postgres@/ledger_test?host=/tmp/pgsock&port=55432``. Skipped otherwise."""
from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

PG_URL = os.environ.get("EDITLEDGER_TEST_PG_URL")
pytestmark = pytest.mark.skipif(not PG_URL, reason="EDITLEDGER_TEST_PG_URL not set (no PostgreSQL server)")


@pytest.fixture
def pg_url():
    engine = sa.create_engine(PG_URL)

    def wipe():
        with engine.begin() as c:
            c.exec_driver_sql("DROP SCHEMA public CASCADE")
            c.exec_driver_sql("CREATE SCHEMA public")

    wipe()
    yield PG_URL
    wipe()
    engine.dispose()


def test_postgres_migrate_agree_and_record(pg_url, tmp_path, monkeypatch):
    import torch
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from ledger import DeltaInput, Ledger, ProbeRecord, migrate
    from ledger.engine import make_engine
    from ledger.errors import SchemaError
    from ledger.schema import metadata

    monkeypatch.setenv("EDITLEDGER_HOME", str(tmp_path))
    with Ledger.open(pg_url) as L:            # an empty database is created at head
        assert L.home == tmp_path
        bm = L.register_base_model("tiny", "t", "a" * 64, {"x": [1, 2]})
        run = L.begin_run(base_model_id=bm.id, method="ROME", hparams={}, stream_name="s",
                          stream_digest="b" * 64, stream_kind="sequential")
        parent = run.head_version_id
        for step in range(1, 6):
            v = L.record_step(run.id, step=step, parent_version_id=parent,
                              requests=[{"subject": "S", "prompt": "{} is", "target_new": " X"}],
                              deltas=[DeltaInput("w", "dense", {"delta": torch.full((2, 2), float(step))}, (2, 2))],
                              tensor_fingerprints={"w": str(step)}, diagnostics={}, wall_time_s=0.0,
                              probes=[ProbeRecord("rewrite", "efficacy_top1", step / 5, 1)])
            parent = v.id
        assert L.trajectory(run.id, "rewrite", "efficacy_top1") == [(s, s / 5) for s in range(1, 6)]
        L.record_probes(parent, [ProbeRecord("perplexity", "ppl", float("nan"), 1, detail={"x": float("nan")})])
        (p,) = L.probes(parent, "perplexity")
        assert p.value != p.value and p.detail == {"x": None}   # NaN value kept; JSON on PostgreSQL: null
        assert [t.efficacy for t in L.timeline(run.id)] == [s / 5 for s in range(1, 6)]
        assert len(L.lineage(parent)) == 6
        assert torch.equal(L.read_artifact(L.deltas(parent)[0].artifact_digest)["delta"], torch.full((2, 2), 5.0))
        assert L.fsck(progress=False).ok
    engine = make_engine(pg_url)
    with engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), metadata)
        assert diff == [], f"schema.py and migrations/ disagree on PostgreSQL: {diff}"
    with engine.begin() as c:
        c.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff'")
    engine.dispose()
    with pytest.raises(SchemaError, match="newer editledger"):
        Ledger.open(pg_url)
    assert migrate.current_revision(pg_url)[0] == "ffff"
