"""Sweeps for real, on tiny-gptj: a 2 methods x 2 streams x 1 seed grid (ROME and FT-L with 10 optimisation
steps; a sequential and a round stream of 2 steps each from the built-in facts, --general none, 128
statistics tokens), run

* in this process: the reference;
* again: every cell skipped, nothing written;
* killed (SIGKILL) inside its second cell, then run again: exactly 4 runs, the interrupted one
  resumed, fingerprints and probe values equal to the reference's;
* in 2 worker processes on one SQLite ledger: no lock error, the same numbers as the reference;
* through Ray in local mode against a real PostgreSQL server (skipped without Ray or a server);

and reported side by side (``report --sweep``: one row per method, one curve per method).
Every cell computes with one torch thread (``--threads 1``): CPU kernels sum in an order that
depends on the thread count, so equal numbers need equal counts.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from editledger.cli import main
from ledger import Ledger
from simulator.sweep import load_grid, run_sweep

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("EDITLEDGER_TEST_PG_URL")

GRID = """
name = "tiny"
models = ["tiny-gptj"]
seeds = [0]
general = "none"
[replay]
stats_tokens = 128
[[methods]]
name = "rome"
hparams = { v_num_grad_steps = 10 }
[[methods]]
name = "ft"
hparams = { num_steps = 10 }
[[streams]]
kind = "sequential"
n = 2
from = "builtin"
[[streams]]
kind = "round"
n = 1
from = "builtin"
"""

# the sweep CLI in a child process that stops for good after its Nth committed step (so that the kill
# lands inside a cell, between two of its steps), for the harness to SIGKILL it there
CHILD = r'''
import os, sys, time
sys.path.insert(0, {root!r})                        # this checkout's code
import simulator.session
real = simulator.session.Session.commit
count = [0]
def commit(*a, **k):
    v = real(*a, **k)
    count[0] += 1
    if count[0] == int(os.environ["SWEEP_STALL_AFTER"]):
        open(os.environ["SWEEP_MARK"], "w").write(str(count[0]))
        time.sleep(600)
    return v
simulator.session.Session.commit = commit
from editledger.cli import main
sys.exit(main(sys.argv[1:]))
'''


def snapshot(db: str, artifacts: str | None = None) -> dict:
    """cell key -> every version of its run: step, kind, fingerprints and probe values (NaN as text)."""
    out = {}
    with Ledger.open(db, create=False, artifacts=artifacts) as led:
        sweep = led.sweep("tiny")
        for key, c in led.sweep_cells(sweep.id).items():
            assert c.status == "done", c
            rows = []
            for v in led.versions(c.run_id):
                probes = sorted((p.suite, p.metric, p.against, repr(p.value)) for p in led.probes(v.id))
                rows.append((v.step, v.kind, v.tensor_fingerprints, probes))
            out[key] = rows
    return out


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("grid")
    p = d / "grid.toml"
    p.write_text(GRID)
    return p


@pytest.fixture(scope="module")
def reference(grid_file, tmp_path_factory):
    """The uninterrupted sweep, in this process."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EDITLEDGER_NO_MACHINE_STATS", "1")    # statistics come from this ledger only
    db = str(tmp_path_factory.mktemp("ref") / "ref.db")
    try:
        result = run_sweep(load_grid(grid_file), db=db, threads=1, device="cpu", progress=False)
    finally:
        mp.undo()
    assert [o.outcome for o in result.outcomes] == ["done"] * 4, result.outcomes
    return db, result, snapshot(db)


def test_reference_sweep_tags_its_runs_and_collects_statistics_once(reference):
    db, result, snap = reference
    assert len(snap) == 4 and all(len([v for v in vs if v[1] == "edit"]) == 2 for vs in snap.values())
    with Ledger.open(db, create=False) as led:
        (sweep,) = led.sweeps()
        assert sweep.name == "tiny" and len(sweep.grid["cells"]) == 4
        runs = led.runs()
        assert len(runs) == 4 and {r.method for r in runs} == {"rome", "ft"}
        run = led.run(result.outcomes[0].run_id)
        assert (run.sweep_id, run.sweep_cell) == (sweep.id, result.outcomes[0].key)
        assert run.config["sweep"]["label"] == "rome/sequential-2/seed0"
        assert run.config["sweep"]["torch_threads"] == 1
        # both ROME cells read one layer's statistics: collected once, stored once
        assert led.counts()["stats"] == 1
        used = {d for r in runs if r.method == "rome" for v in led.versions(r.id) for d in v.stats_used}
        assert len(used) == 1


def test_running_it_again_skips_every_cell(reference, grid_file, capsys):
    db, result, snap = reference
    with Ledger.open(db, create=False) as led:
        before = [(r.id, r.updated_at) for r in led.runs()]
    assert main(["--db", db, "sweep", str(grid_file), "--threads", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "4 cells — 4 skipped" in out
    with Ledger.open(db, create=False) as led:
        assert [(r.id, r.updated_at) for r in led.runs()] == before
    assert snapshot(db) == snap


def test_a_killed_sweep_resumes_its_interrupted_cell_to_the_same_fingerprints(reference, grid_file, tmp_path,
                                                                              monkeypatch, capsys):
    monkeypatch.setenv("EDITLEDGER_NO_MACHINE_STATS", "1")
    db = str(tmp_path / "killed.db")
    child = tmp_path / "child.py"
    child.write_text(CHILD.format(root=str(ROOT)))
    mark = tmp_path / "mark"
    # cells run in grid order: rome/sequential (2 steps), then ft/sequential, killed after its step 1
    env = {**os.environ, "SWEEP_STALL_AFTER": "3", "SWEEP_MARK": str(mark), "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, str(child), "--db", db, "sweep", str(grid_file), "--threads", "1",
                          "--no-progress", "--device", "cpu"], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not mark.exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mark.exists(), p.stderr.read() if p.poll() is not None else "no mark"
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait(timeout=60)
    with Ledger.open(db, create=False) as led:
        cells = led.sweep_cells(led.sweep("tiny").id)
        assert sorted((c.status, c.steps, c.writer_alive) for c in cells.values()) == [
            ("done", 2, False), ("running", 1, False)]
    # again, in this process: the done cell is skipped, the killed one resumed, the rest started
    assert main(["--db", db, "sweep", str(grid_file), "--threads", "1", "--no-progress", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "4 cells — 2 done, 1 resumed, 1 skipped" in out
    with Ledger.open(db, create=False) as led:
        assert len(led.runs()) == 4
        resumed = [led.run(c.run_id) for c in led.sweep_cells(led.sweep("tiny").id).values()
                   if "resumed after step 1" in (led.run(c.run_id).note or "")]
        assert len(resumed) == 1 and resumed[0].method == "ft"
        assert led.fsck(progress=False).ok
    assert snapshot(db) == reference[2]


def test_two_workers_give_the_same_numbers_as_one(reference, grid_file, tmp_path, monkeypatch):
    monkeypatch.setenv("EDITLEDGER_NO_MACHINE_STATS", "1")
    db = str(tmp_path / "two.db")
    result = run_sweep(load_grid(grid_file), db=db, workers=2, threads=1, device="cpu", progress=False)
    # every cell done: no "database is locked" (or any other error) in either worker
    assert [(o.outcome, o.error) for o in result.outcomes] == [("done", None)] * 4
    assert snapshot(db) == reference[2]
    with Ledger.open(db, create=False) as led:
        assert led.counts()["stats"] == 1 and led.fsck(progress=False).ok


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (the [ray] extra)")
@pytest.mark.skipif(not PG_URL, reason="EDITLEDGER_TEST_PG_URL not set (no PostgreSQL server)")
def test_ray_local_against_postgresql_gives_the_same_numbers(reference, grid_file, tmp_path, monkeypatch):
    monkeypatch.setenv("EDITLEDGER_NO_MACHINE_STATS", "1")
    engine = sa.create_engine(PG_URL)
    with engine.begin() as c:                      # a disposable database: emptied first
        c.exec_driver_sql("DROP SCHEMA public CASCADE")
        c.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    store = f"file://{tmp_path}/shared-artifacts"  # the store the Ray workers share
    result = run_sweep(load_grid(grid_file), db=PG_URL, artifacts=store, ray="local", progress=False)
    assert [(o.outcome, o.error) for o in result.outcomes] == [("done", None)] * 4
    assert snapshot(PG_URL, artifacts=store) == reference[2]
    with Ledger.open(PG_URL, create=False, artifacts=store) as led:
        assert led.fsck(progress=False).ok and led.counts()["stats"] == 1


def test_report_puts_the_cells_side_by_side(reference, tmp_path, capsys):
    db, result, _ = reference
    from simulator import report as rpt
    with Ledger.open(db, create=False) as led:
        per_run = {r.run_id: r for r in rpt.collect(led, [o.run_id for o in result.outcomes])}
    assert main(["--db", db, "report", "--sweep", "tiny", "--format", "json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert [c["label"] for c in js["cells"]] == [o.label for o in result.outcomes]
    assert [r["row"] for r in js["rows"]] == ["rome", "ft"] and all(r["cells"] == 2 for r in js["rows"])
    # a row's column: the mean over its cells that measure it (efficacy: both streams; Succ: the round one)
    table = {row["row"]: row for row in js["tables"]["Reliability and locality (CounterFact)"]}
    t4 = {row["row"]: row for row in js["tables"]["Table 4: locality"]}
    for method in ("rome", "ft"):
        mine = [per_run[o.run_id] for o in result.outcomes if o.label.startswith(method + "/")]
        effs = [r.columns["Eff top1"] for r in mine]
        assert math.isclose(table[method]["Eff top1"], sum(effs) / 2)
        succ = [r.columns["Succ"] for r in mine if r.columns.get("Succ") is not None]
        assert len(succ) == 1 and t4[method]["Succ"] == succ[0]
    # Figure 4: one curve per method and stream (two streams, whose numbers of edits differ)
    assert set(js["curves"]["Retention (efficacy)"]) == {"rome · sequential-2", "rome · round-1",
                                                         "ft · sequential-2", "ft · round-1"}
    png = tmp_path / "fig4.png"
    assert main(["--db", db, "report", "--sweep", "tiny", "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "Sweep tiny: 4 cells" in text and "One row per method" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["--db", db, "report", "--sweep", "nope"]) == 2
    assert "no sweep 'nope'" in capsys.readouterr().err
