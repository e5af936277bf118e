"""`editledger db status | upgrade | fsck`."""
from __future__ import annotations

import sqlite3

import torch

from editledger.cli import main
from ledger import DeltaInput, Ledger, migrate

HEAD = migrate.head_revision()


def test_db_upgrade_status_fsck(tmp_path, capsys):
    db = str(tmp_path / "c.db")
    assert main(["--db", db, "db", "status"]) == 0
    assert "no ledger yet" in capsys.readouterr().out
    assert main(["--db", db, "db", "upgrade"]) == 0
    assert f"created at schema {HEAD}" in capsys.readouterr().out
    with Ledger.open(db) as L:
        bm = L.register_base_model("tiny", "t", "a" * 64, {})
        run = L.begin_run(base_model_id=bm.id, method="ROME", hparams={}, stream_name="facts.jsonl",
                          stream_digest="b" * 64, stream_kind="sequential", name="first")
        v = L.record_step(run.id, step=1, parent_version_id=run.head_version_id, requests=[],
                          deltas=[DeltaInput("w", "dense", {"delta": torch.ones(2)}, (2,), norm=1.4)],
                          tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0)
        digest = L.deltas(v.id)[0].artifact_digest
        path = L.store.path_for(digest)
    assert main(["--db", db, "db", "status"]) == 0
    out = capsys.readouterr().out
    assert f"{HEAD} (this editledger: {HEAD}; up to date)" in out and "1 runs" in out and "first" in out
    assert main(["--db", db, "db", "fsck"]) == 0
    out = capsys.readouterr().out
    assert "ok: consistent" in out and f"left 'running' by a writer that is gone" in out   # nobody writes run 1
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    assert main(["--db", db, "db", "fsck"]) == 4          # IntegrityError's exit code
    cap = capsys.readouterr()
    assert f"{digest}: its bytes hash to" in cap.out and f"(needed by versions {v.id})" in cap.out
    assert "not consistent" in cap.err


def test_newer_schema_exit_code(tmp_path, capsys):
    db = tmp_path / "n.db"
    Ledger.open(str(db)).close()
    con = sqlite3.connect(db)
    con.execute("UPDATE alembic_version SET version_num = 'ffff'")
    con.commit()
    con.close()
    assert main(["--db", str(db), "db", "upgrade"]) == 3
    assert "newer editledger" in capsys.readouterr().err
    assert main(["--db", str(db), "db", "status"]) == 0
    assert "unknown: written by a newer editledger" in capsys.readouterr().out
