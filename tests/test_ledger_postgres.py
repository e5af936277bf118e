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


def _fill(L, steps=3):
    import torch

    from ledger import DeltaInput, ProbeRecord
    bm = L.register_base_model("tiny", "t", "a" * 64, {})
    run = L.begin_run(base_model_id=bm.id, method="rome", hparams={}, stream_name="s", stream_digest="b" * 64,
                      stream_kind="sequential", own=True)
    parent = run.head_version_id
    for step in range(1, steps + 1):
        parent = L.record_step(run.id, step=step, parent_version_id=parent,
                               requests=[{"subject": "S", "prompt": "{} is", "target_new": " X"}],
                               deltas=[DeltaInput("w", "dense", {"delta": torch.full((2,), float(step))}, (2,))],
                               tensor_fingerprints={"w": str(step)}, diagnostics={}, wall_time_s=0.0,
                               probes=[ProbeRecord("rewrite", "efficacy_top1", 1.0, 1)]).id
    return run, parent


def test_postgres_downgrade_and_upgrade_keep_the_data(pg_url, tmp_path, monkeypatch):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from ledger import Ledger, migrate
    from ledger.engine import make_engine
    from ledger.schema import metadata

    monkeypatch.setenv("EDITLEDGER_HOME", str(tmp_path))
    with Ledger.open(pg_url) as L:
        run, head = _fill(L)
        L.release_run(run.id)
    head_rev = migrate.head_revision()
    for target in ("0004", "0001"):               # back through 0005 (lease, unique step) and further
        migrate.downgrade(pg_url, target)
        assert migrate.current_revision(pg_url)[0] == target
    assert migrate.upgrade(pg_url) == ("0001", head_rev)
    with Ledger.open(pg_url) as L:
        assert [v.step for v in L.versions(run.id)] == [1, 2, 3]
        assert L.trajectory(run.id, "rewrite", "efficacy_top1") == [(1, 1.0), (2, 1.0), (3, 1.0)]
        assert L.fsck(progress=False).ok
    engine = make_engine(pg_url)
    with engine.connect() as c:
        assert compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), metadata) == []
    engine.dispose()


def test_postgres_one_writer_unique_steps_and_fsck(pg_url, tmp_path, monkeypatch):
    import sqlalchemy as sa

    from ledger import Ledger
    from ledger.errors import RunBusy
    from ledger.history import reset

    monkeypatch.setenv("EDITLEDGER_HOME", str(tmp_path))
    with Ledger.open(pg_url) as a, Ledger.open(pg_url) as b:
        run, head = _fill(a)
        with pytest.raises(RunBusy):
            b.acquire_run(run.id)
        with pytest.raises(RunBusy):
            reset(b, run.id, 1)
        with pytest.raises(sa.exc.IntegrityError):
            with a.engine.begin() as c:
                c.execute(sa.text("INSERT INTO version (base_model_id, run_id, parent_id, step, kind, "
                                  "tensor_fingerprints, n_requests, diagnostics, stats_used, wall_time_s, created_at) "
                                  "SELECT base_model_id, run_id, id, step, 'edit', '{}', 0, '{}', '[]', 0, created_at "
                                  "FROM version WHERE id = :v"), {"v": head})
        a.release_run(run.id)
        reset(b, run.id, 1)
        digest = b.deltas(head)[0].artifact_digest
        path = b.store.path_for(digest)
        path.write_bytes(path.read_bytes()[:-2])
        rep = b.fsck(progress=False)
        assert not rep.ok and rep.unusable == [digest] and list(rep.damaged_versions) == [head]
