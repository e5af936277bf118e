"""Corruption: flip a byte, truncate or delete an artifact of a real ledger (ROME with keyframes and a
revert, and a stateful method), and check that fsck names it and exactly the versions that need it,
that checkout of those versions fails with a message naming the artifact and them, and that every
other version still checks out bit-exactly. Then the other damage fsck must see: an artifact in the
wrong folder, a stray file, leftover temp files, orphans, a damaged SQLite page; and what --repair
may and may not touch."""
from __future__ import annotations

import hashlib
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from editledger.cli import main
from ledger import Ledger
from ledger.errors import IntegrityError, UserError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import toy_lookup  # noqa: E402,F401  (registers the stateful toy method)

NAMED: dict[str, int] = {"made": 0, "named": 0}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A ledger with run 1 (ROME, 5 steps, keyframes every 2, then a revert of step 2) and run 2 (the
    toy stateful method, 3 steps)."""
    from simulator.streams import make_stream, read_benchmark, save_stream
    d = tmp_path_factory.mktemp("corrupt")
    for n, name in ((5, "a"), (3, "b")):
        s = make_stream("sequential", read_benchmark("builtin"), n=n, seed=2)
        for st in s.steps:
            st.probes = {"rewrite": st.probes["rewrite"]}
        save_stream(s, d / f"{name}.jsonl")
    db = str(d / "l.db")
    common = ["--model", "tiny-gptj", "--device", "cpu", "--general", "none", "--stats-tokens", "128"]
    assert main(["--db", db, "replay", str(d / "a.jsonl"), "--method", "rome", "--keyframe-every", "2", *common]) == 0
    assert main(["--db", db, "revert", "1", "2"]) == 0
    assert main(["--db", db, "replay", str(d / "b.jsonl"), "--method", "toy-lookup", *common]) == 0
    with Ledger.open(db) as led:
        assert led.fsck(progress=False).ok
    return d


def _copy(built: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(built, dst)
    return dst / "l.db"


def _versions(led) -> list[int]:
    return [v.id for r in led.runs() for v in led.versions(r.id)]


def _pick(led, which: str) -> str:
    """A delta in the middle of run 1, run 1's first keyframe, or run 2's second state delta."""
    if which == "delta":
        v = [v for v in led.versions(1) if v.step == 1][0]
        return led.deltas(v.id)[0].artifact_digest
    if which == "keyframe":
        v = [v for v in led.versions(1) if v.step == 2][0]
        return next(iter(led.keyframe(v.id).values()))
    v = [v for v in led.versions(2) if v.step == 2][0]
    return [d for d in led.deltas(v.id) if d.kind == "state"][0].artifact_digest


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "flip":
        b = bytearray(data)
        b[len(b) // 2] ^= 0x10
        path.write_bytes(bytes(b))
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.unlink()


@pytest.mark.parametrize("which", ["delta", "keyframe", "state"])
@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_damaged_artifact_is_named_with_exactly_the_versions_that_need_it(built, tmp_path, how, which):
    from simulator.session import Session
    db = _copy(built, tmp_path)
    with Ledger.open(str(db)) as led:
        digest = _pick(led, which)
        _damage(led.store.path_for(digest), how)
        NAMED["made"] += 1
        rep = led.fsck(progress=False)
        assert not rep.ok and rep.unusable == [digest]
        assert digest in (rep.missing if how == "delete" else rep.corrupt)
        NAMED["named"] += 1
        need = {v for v, ds in rep.damaged_versions.items() if digest in ds}
        assert need, "a damaged artifact that no version needs?"
        failed, ok = set(), set()
        s = Session.open(led, "tiny-gptj", device="cpu", progress=False)
        for vid in _versions(led):
            try:
                s.checkout(vid)
                ok.add(vid)
            except IntegrityError as e:
                assert digest in str(e) and "needed by version" in str(e), str(e)
                assert all(str(x) in str(e) for x in sorted(need)[:20])
                failed.add(vid)
        assert failed == need, "fsck's versions and the versions whose checkout fails must be the same"
        assert ok and ok.isdisjoint(need)
        if which == "delta":       # a later keyframe holds the tensor: versions after it do not need the delta
            kf_steps = {led.version(v).step for v in ok if led.version(v).run_id == 1}
            assert 4 in kf_steps
    code = main(["--db", str(db), "db", "fsck"])
    assert code == 4


def test_fsck_sees_misplaced_stray_temp_orphan_and_repair_touches_only_what_nobody_references(built, tmp_path,
                                                                                           capsys):
    db = _copy(built, tmp_path)
    with Ledger.open(str(db)) as led:
        store = led.store
        referenced = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in store.iter_files()}
        moved = _pick(led, "delta")
        src = store.path_for(moved)
        wrong = store.root / ("00" if moved[:2] != "00" else "01") / src.name
        wrong.parent.mkdir(exist_ok=True)
        src.rename(wrong)                                   # an artifact in the wrong two-letter folder
        (store.root / "junk.txt").write_text("hello")       # a stray file at the top
        (store.root / moved[:2] / "junk.txt").write_text("hello")
        tmp = store.root / moved[:2] / ".tmp-dead.safetensors"
        tmp.write_bytes(b"half a write")
        import torch
        orphan, _ = store.write({"x": torch.zeros(3)})       # written, never committed
        NAMED["made"] += 4
        rep = led.fsck(progress=False)
        assert not rep.ok and str(wrong) in rep.misplaced and moved in rep.missing
        assert len(rep.stray) == 2 and rep.corrupt == [] and rep.temp_files == [str(tmp)] and rep.orphans == [orphan]
        NAMED["named"] += 4
        res = led.repair(rep, min_age=0)
        assert res.moved == [moved] and orphan in res.removed_files and tmp.name in res.removed_files
        rep = led.fsck(progress=False)
        assert rep.ok and rep.orphans == [] and rep.temp_files == [] and len(rep.stray) == 2
        for p, h in referenced.items():                     # nothing referenced was deleted or changed
            assert p.is_file() and hashlib.sha256(p.read_bytes()).hexdigest() == h
    assert main(["--db", str(db), "db", "fsck", "--repair", "--min-age", "0"]) == 0
    out = capsys.readouterr().out
    assert "stray files" in out and "ok: consistent" in out


def test_a_damaged_sqlite_page_is_reported_not_a_traceback(built, tmp_path, capsys):
    db = _copy(built, tmp_path)
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = con.execute("PRAGMA page_size").fetchone()[0]
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'probe_result'").fetchone()[0]
    con.close()
    data = bytearray(db.read_bytes())
    start = (root - 1) * page
    data[start + 8: start + 200] = b"\xff" * 192              # the page's cell pointers: garbage
    db.write_bytes(bytes(data))
    NAMED["made"] += 1
    code = main(["--db", str(db), "db", "fsck"])
    cap = capsys.readouterr()
    assert code == 4 and "Traceback" not in cap.err
    assert "integrity_check" in cap.out or "damaged" in cap.err, (cap.out, cap.err)
    NAMED["named"] += 1
    for cmd in (["log", "1"], ["report", "1"], ["db", "status"]):
        code = main(["--db", str(db), *cmd])
        assert code in (0, 4), cmd
        assert "Traceback" not in capsys.readouterr().err


def test_zzz_corruptions_named():
    print(f"\ncorruptions named: {NAMED['named']} of {NAMED['made']} made")
    assert NAMED["named"] == NAMED["made"]
