"""Resources: a full disk and a read-only ledger give one clear message (no traceback) and leave the
ledger consistent. Each is simulated twice: on a real small filesystem (a 2 MB tmpfs, where the
machine lets us mount one: root with CAP_SYS_ADMIN, as CI is) and by patching the write path
(SQLite's page limit, an artifact write that fails with ENOSPC/EROFS), which runs everywhere."""
from __future__ import annotations

import errno
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import torch

from ledger import DeltaInput, Ledger
from ledger import artifacts as artifacts_mod
from ledger import engine as engine_mod
from test_fuzz_inputs import ledger_state, run_cli


def _ledger(db: Path, steps: int = 2, size: int = 16) -> tuple[int, int]:
    with Ledger.open(str(db)) as led:
        bm = led.register_base_model("tiny", "t", "a" * 64, {})
        run = led.begin_run(base_model_id=bm.id, method="rome", hparams={}, stream_name="s", stream_digest="b" * 64,
                            stream_kind="sequential")
        parent = run.head_version_id
        for step in range(1, steps + 1):
            parent = _step(led, run.id, step, parent, size).id
        led.set_run_status(run.id, "done")
        return run.id, parent


def _step(led, run_id, step, parent, size=16):
    g = torch.Generator().manual_seed(step)
    return led.record_step(run_id, step=step, parent_version_id=parent,
                           requests=[{"subject": f"S{step}", "prompt": "{} is in", "target_new": " X"}],
                           deltas=[DeltaInput("w", "dense", {"delta": torch.randn(size, size, generator=g)}, (size, size))],
                           tensor_fingerprints={"w": str(step)}, diagnostics={}, wall_time_s=0.0)


def _consistent(db: Path) -> None:
    with Ledger.open(str(db)) as led:
        rep = led.fsck(progress=False)
        assert rep.ok and rep.temp_files == [], rep


# ----------------------------------------------------------------------------- patched write paths
def test_sqlite_full_gives_a_clear_error_and_changes_nothing(tmp_path, monkeypatch):
    db = tmp_path / "l.db"
    run_id, _ = _ledger(db)
    before = ledger_state(db)
    real = engine_mod._sqlite_pragmas

    def full(dbapi_conn, record):      # the database may not grow by a single page: SQLITE_FULL on write
        real(dbapi_conn, record)
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

    monkeypatch.setattr(engine_mod, "_sqlite_pragmas", full)
    from ledger.errors import ResourceError
    with Ledger.open(str(db)) as led:
        with pytest.raises(ResourceError) as e:      # a step that needs a new page: SQLITE_FULL, in words
            led.record_step(run_id, step=3, parent_version_id=led.run(run_id).head_version_id,
                            requests=[{"subject": "S", "prompt": "{} is", "target_new": " X"}], deltas=[],
                            tensor_fingerprints={}, diagnostics={"big": "x" * 200_000}, wall_time_s=0.0)
    assert "full" in str(e.value) and "Nothing half-written was committed" in str(e.value)
    monkeypatch.undo()
    assert ledger_state(db) == before
    _consistent(db)


def test_artifact_write_on_a_full_disk_leaves_no_temp_file_and_a_consistent_ledger(tmp_path, monkeypatch):
    db = tmp_path / "l.db"
    run_id, head = _ledger(db)

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with Ledger.open(str(db)) as led:
        led.set_run_status(run_id, "running")
        monkeypatch.setattr(artifacts_mod.os, "fsync", no_space)
        with pytest.raises(OSError) as e:
            _step(led, run_id, 3, head)
        monkeypatch.undo()
    from ledger.failures import explain
    msg = str(explain(e.value))
    assert "disk full" in msg and "free some space" in msg
    _consistent(db)
    with Ledger.open(str(db)) as led:
        assert [v.step for v in led.versions(run_id)] == [1, 2]
        _step(led, run_id, 3, head)             # space is back: the step goes through


def test_read_only_ledger_refuses_writes_in_words_and_still_reads(tmp_path, monkeypatch):
    db = tmp_path / "l.db"
    run_id, _ = _ledger(db)
    before = ledger_state(db)
    real = engine_mod._sqlite_pragmas

    def read_only(dbapi_conn, record):
        real(dbapi_conn, record)
        dbapi_conn.execute("PRAGMA query_only = ON")

    monkeypatch.setattr(engine_mod, "_sqlite_pragmas", read_only)
    assert run_cli(["--db", str(db), "log", str(run_id)])[0] == 0
    code, _, err = run_cli(["--db", str(db), "reset", str(run_id), "--to", "1"])
    assert code == 1 and "read-only" in err
    monkeypatch.undo()

    def erofs(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "artifacts"))

    monkeypatch.setattr(artifacts_mod.tempfile, "mkstemp", erofs)
    from ledger.failures import explain
    with Ledger.open(str(db)) as led, pytest.raises(OSError) as e:
        _step(led, run_id, 3, led.run(run_id).head_version_id)
    assert "read-only" in str(explain(e.value))
    monkeypatch.undo()
    assert ledger_state(db) == before
    _consistent(db)


# ----------------------------------------------------------------------------- a real small filesystem
@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here ({r.stderr.strip() or r.returncode}); "
                    "the patched-write-path tests cover the same promises")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(mnt: Path) -> Path:
    filler = mnt / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


def test_a_really_full_disk(small_fs):
    db = small_fs / "l.db"
    run_id, head = _ledger(db)
    before = ledger_state(db)
    filler = _fill(small_fs)
    # an artifact that does not fit: the step is refused with the disk-full message, no temp file stays
    with Ledger.open(str(db)) as led:
        led_run_status = led.run(run_id).status
    code, _, err = run_cli(["--db", str(db), "reset", str(run_id), "--to", "1"])
    assert code == 1 and ("full" in err), err
    with Ledger.open(str(db)) as led, pytest.raises(OSError) as e:
        _step(led, run_id, 3, head, size=512)        # 1 MB of float32
    from ledger.failures import explain
    assert "disk full" in str(explain(e.value))
    filler.unlink()
    assert ledger_state(db) == before and led_run_status == "done"
    _consistent(db)
    with Ledger.open(str(db)) as led:
        rep = led.fsck(progress=False)
        assert not list(small_fs.rglob(".tmp-*"))
        assert rep.ok


def test_a_really_read_only_filesystem(small_fs):
    db = small_fs / "l.db"
    run_id, _ = _ledger(db)
    before = ledger_state(db)
    r = subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot remount read-only: {r.stderr.strip()}")
    try:
        for cmd in (["log", str(run_id)], ["db", "status"], ["db", "fsck"]):
            code, _, err = run_cli(["--db", str(db), *cmd])
            assert code == 0 or "read-only" in err or "cannot open" in err, (cmd, err)
        code, _, err = run_cli(["--db", str(db), "reset", str(run_id), "--to", "1"])
        assert code == 1 and ("read-only" in err or "cannot open" in err), err
        code, _, err = run_cli(["--db", str(small_fs / "new.db"), "db", "upgrade"])
        assert code == 1 and err
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], capture_output=True)
    assert ledger_state(db) == before
    _consistent(db)
    assert not os.path.exists(small_fs / "new.db")
