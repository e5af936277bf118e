"""Schema, migrations and the upgrade policy."""
from __future__ import annotations

import hashlib
import sqlite3

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ledger import Ledger, migrate, resolve
from ledger.engine import make_engine
from ledger.errors import InputError, SchemaError
from ledger.schema import NAMING_CONVENTION, metadata

EXPECTED_TABLES = {"base_model", "artifact", "run", "version", "edit_request", "delta", "probe_result",
                   "stats_cache", "audit_finding"}


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_migration_from_empty_to_head(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert migrate.current_revision(url) == (None, False)
    before, after = migrate.upgrade(url)
    assert (before, after) == (None, migrate.head_revision())
    engine = make_engine(url)
    with engine.connect() as c:
        assert set(sa.inspect(c).get_table_names()) == EXPECTED_TABLES | {"alembic_version"}
    engine.dispose()
    assert migrate.upgrade(url) == (after, after)   # idempotent


def test_models_and_migrations_describe_the_same_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    with engine.connect() as c:
        ctx = MigrationContext.configure(c, opts={"compare_type": True, "compare_server_default": True})
        diff = compare_metadata(ctx, metadata)
    engine.dispose()
    assert diff == [], f"schema.py and migrations/ disagree: {diff}"


def test_every_constraint_is_named_by_convention(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    prefixes = tuple(f"{k}_" for k in NAMING_CONVENTION)
    with engine.connect() as c:
        insp = sa.inspect(c)
        for t in EXPECTED_TABLES:
            names = [fk["name"] for fk in insp.get_foreign_keys(t)] + \
                [u["name"] for u in insp.get_unique_constraints(t)] + \
                [i["name"] for i in insp.get_indexes(t)] + \
                [ck["name"] for ck in insp.get_check_constraints(t)]
            assert all(n and n.startswith(prefixes) for n in names), f"table {t}: unnamed constraint in {names}"
        assert {fk["name"] for fk in insp.get_foreign_keys("run")} >= {
            "fk_run_head_version_id_version", "fk_run_start_version_id_version"}
    engine.dispose()


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path):
    with Ledger.open(str(tmp_path / "p.db")) as L:
        with L.engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            with pytest.raises(sa.exc.IntegrityError):   # foreign keys are enforced
                c.exec_driver_sql("INSERT INTO delta (version_id, position, tensor, kind, artifact_digest, shape, "
                                  "norm, nbytes, meta) VALUES (999, 0, 'w', 'dense', 'x', '[]', 0, 0, '{}')")


def test_newer_schema_is_refused_and_nothing_written(tmp_path):
    path = tmp_path / "future.db"
    with Ledger.open(str(path)):
        pass
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    con.commit()
    con.close()
    for extra in ("-wal", "-shm"):
        (tmp_path / f"future.db{extra}").unlink(missing_ok=True)
    digest, listing = _sha(path), sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(SchemaError, match="9999_from_the_future.*newer editledger"):
        Ledger.open(str(path))
    with pytest.raises(SchemaError, match="newer editledger.*not modified"):
        migrate.upgrade(f"sqlite:///{path}")
    assert _sha(path) == digest, "refusing a newer ledger must not write to it"
    # SQLite may create the WAL index files to read a WAL database; no page may have been written
    assert {p.name for p in tmp_path.iterdir()} - {"future.db-wal", "future.db-shm"} == set(listing)
    wal = tmp_path / "future.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0, "a write went into the WAL"


def test_behind_schema_names_the_upgrade_command_and_upgrade_keeps_data(tmp_path, capsys):
    from editledger.cli import main
    from ledger import ProbeRecord

    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    with Ledger.open(str(path)) as L:
        bm = L.register_base_model("tiny", "t", "a" * 64, {})
        run = L.begin_run(base_model_id=bm.id, method="FT", hparams={}, stream_name="s", stream_digest="b" * 64,
                          stream_kind="sequential")
        v = L.record_step(run.id, step=1, parent_version_id=run.head_version_id, requests=[], deltas=[],
                          tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0,
                          probes=[ProbeRecord("rewrite", "efficacy_top1", 0.75, 1)])
    migrate.downgrade(url, "0001")   # take the ledger back to the first revision, as an old editledger left it
    head = migrate.head_revision()
    assert head != "0001" and migrate.current_revision(url)[0] == "0001"
    with pytest.raises(SchemaError) as e:
        Ledger.open(str(path))
    assert str(e.value) == (f"ledger {path} is at schema 0001, this editledger needs {head}: "
                            f"run `editledger --db {path} db upgrade`")
    assert main(["--db", str(path), "db", "upgrade"]) == 0
    assert f"upgraded from schema 0001 to {head}" in capsys.readouterr().out
    with Ledger.open(str(path)) as L:
        assert L.trajectory(run.id, "rewrite", "efficacy_top1") == [(1, 0.75)]
        assert L.timeline(run.id)[0].version_id == v.id


def test_open_without_create_refuses_missing_file(tmp_path):
    with pytest.raises(InputError, match="no ledger at"):
        Ledger.open(str(tmp_path / "none.db"), create=False)
    assert not (tmp_path / "none.db").exists()


def test_foreign_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(SchemaError, match="not an editledger ledger"):
        Ledger.open(str(path))


def test_resolve(tmp_path, monkeypatch):
    monkeypatch.delenv("EDITLEDGER_DB", raising=False)
    monkeypatch.delenv("EDITLEDGER_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve(None) == (f"sqlite:///{tmp_path / 'editledger.db'}", tmp_path)
    monkeypatch.setenv("EDITLEDGER_HOME", str(tmp_path / "h"))
    assert resolve(None) == (f"sqlite:///{tmp_path / 'h' / 'editledger.db'}", tmp_path / "h")
    assert resolve("sub/x.db") == (f"sqlite:///{tmp_path / 'sub' / 'x.db'}", tmp_path / "sub")
    assert resolve(f"sqlite:///{tmp_path}/y.db") == (f"sqlite:///{tmp_path / 'y.db'}", tmp_path)
    assert resolve("postgresql+psycopg://u@host/db") == ("postgresql+psycopg://u@host/db", tmp_path / "h")
    monkeypatch.setenv("EDITLEDGER_DB", str(tmp_path / "env.db"))
    assert resolve(None) == (f"sqlite:///{tmp_path / 'env.db'}", tmp_path)
    assert resolve("cli.db")[0] == f"sqlite:///{tmp_path / 'cli.db'}"   # --db wins over the variable


def test_sqlite_migrations_run_with_foreign_keys_off_and_the_write_lock(tmp_path, monkeypatch):
    from alembic import command

    seen = {}
    real = command.upgrade

    def spy(cfg, revision):
        conn = cfg.attributes["connection"]
        seen["fk"] = conn.exec_driver_sql("PRAGMA foreign_keys").scalar()
        seen["in_tx"] = conn.in_transaction()
        # another connection cannot write while the migration holds the lock
        other = sqlite3.connect(tmp_path / "fk.db", timeout=0)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("CREATE TABLE probe_lock (x)")
        other.close()
        return real(cfg, revision)

    monkeypatch.setattr(command, "upgrade", spy)
    with Ledger.open(str(tmp_path / "fk.db")) as L:
        with L.engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1   # back on afterwards
    assert seen == {"fk": 0, "in_tx": True}


def test_0005_renumbers_steps_recorded_twice_and_keeps_every_version(tmp_path):
    """Ledgers written before 0005 by two writers hold duplicate steps: the upgrade keeps the first
    version of each, gives the others fresh numbers after the run's last step, with a note."""
    from ledger import ProbeRecord

    path = tmp_path / "dup.db"
    url = f"sqlite:///{path}"
    with Ledger.open(str(path)) as L:
        bm = L.register_base_model("tiny", "t", "a" * 64, {})
        run = L.begin_run(base_model_id=bm.id, method="rome", hparams={}, stream_name="s", stream_digest="b" * 64,
                          stream_kind="sequential")
        v1 = L.record_step(run.id, step=1, parent_version_id=run.head_version_id, requests=[], deltas=[],
                           tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0)
        v2 = L.record_step(run.id, step=2, parent_version_id=v1.id, requests=[], deltas=[],
                           tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0)
    migrate.downgrade(url, "0004")
    con = sqlite3.connect(path)        # what two writers did: step 2 again, twice, with a probe each
    for _ in range(2):
        cur = con.execute("INSERT INTO version (base_model_id, run_id, parent_id, step, kind, tensor_fingerprints, "
                          "n_requests, diagnostics, stats_used, wall_time_s, created_at) SELECT base_model_id, run_id, "
                          "id, 2, 'edit', '{}', 0, '{}', '[]', 0, created_at FROM version WHERE id = ?", (v1.id,))
        con.execute("INSERT INTO probe_result (version_id, run_id, step, suite, metric, against, value, count, "
                    "created_at) VALUES (?, ?, 2, 'rewrite', 'efficacy_top1', 'none', 1.0, 1, '2020-01-01')",
                    (cur.lastrowid, run.id))
    con.commit()
    con.close()
    assert migrate.upgrade(url)[1] == migrate.head_revision()
    with Ledger.open(str(path)) as L:
        vs = L.versions(run.id)
        assert [(v.id, v.step) for v in vs] == [(v1.id, 1), (v2.id, 2), (v2.id + 1, 3), (v2.id + 2, 4)]
        assert all("renumbered by schema upgrade 0005: step 2" in v.note for v in vs[2:])
        assert L.trajectory(run.id, "rewrite", "efficacy_top1") == [(3, 1.0), (4, 1.0)]
        assert L.run(run.id).step_count == 4
