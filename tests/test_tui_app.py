"""Drive the TUI with Pilot through every screen and both actions on a ledger built here,
asserting on what is shown."""
from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
import sys

import pytest

from tui.app import EditLedgerApp
from tui.data import LedgerData
from tui.testing import build_sample_ledger
from tui.widgets.lazy_table import LazyTable


def run_async(test):
    """Run an async test with asyncio.run (no async pytest plugin needed); pytest still sees the
    test's fixtures through functools.wraps."""
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))
    return wrapper


SIZE = (100, 30)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("tui-ledger")
    ids = build_sample_ledger(str(root / "ledger.db"))
    return root, ids


@pytest.fixture
def ledger_copy(sample, tmp_path):
    """A private copy (db + artifacts) for tests that write."""
    root, ids = sample
    shutil.copytree(root, tmp_path / "l")
    return str(tmp_path / "l" / "ledger.db"), ids


async def settle(pilot) -> None:
    """Let the app process its messages and finish its workers (the timeline's Δ columns)."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def make_app(db: str, run_id=None) -> EditLedgerApp:
    return EditLedgerApp(LedgerData.open(db, label="ledger.db"), run_id, poll_interval=0)


def table(app, selector="#main") -> LazyTable:
    return app.screen.query_one(selector, LazyTable)


def shown(app, selector="#main") -> list[list[str]]:
    t = table(app, selector)
    return [t.cell_texts(i) for i in range(len(t.rows))]


def text_of(app, selector) -> str:
    return str(app.screen.query_one(selector).render())


def title(app) -> str:
    return text_of(app, "#title")


def test_tui_app_does_not_import_torch():
    code = "import sys, tui.app, tui.data; assert 'torch' not in sys.modules, 'tui imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


@run_async
async def test_runs_screen_lists_runs_filter_sort(sample):
    root, ids = sample
    app = make_app(str(root / "ledger.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        rows = shown(app)
        assert [r[0] for r in rows] == ["run-1", "run-2"]
        r1 = rows[0]
        # steps: the ledger's highest recorded step (12 edits, then the revert recorded as step 13)
        assert r1[1:6] == ["tiny-gptj", "ROME", "counterfact-12.jsonl", "13", "done"]
        assert rows[1][2] == "MEMIT" and rows[1][5] == "interrupted"
        header = [c.label for c in table(app).columns]
        assert header[6:9] == ["rw.eff", "nb.ns", "para.e"]       # headline metrics, discovered
        assert header[9] == "ppl"                                 # the sparkline's metric
        assert len(r1[9]) == 8 and set(r1[9]) <= set("▁▂▃▄▅▆▇█")
        assert "2 runs" in title(app)
        # filter with /
        await pilot.press("slash")
        await pilot.press(*"memit")
        await pilot.press("enter")
        assert [r[0] for r in shown(app)] == ["run-2"]
        assert "filter: memit" in title(app) and "1 of 2 runs" in title(app)
        await pilot.press("escape")                               # clears the filter
        assert len(shown(app)) == 2
        # sort: s cycles id -> updated -> model -> method; S reverses
        await pilot.press("s", "s", "s")
        assert "sort: method" in title(app)
        assert [r[2] for r in shown(app)] == ["MEMIT", "ROME"]
        await pilot.press("S")
        assert [r[2] for r in shown(app)] == ["ROME", "MEMIT"]


@run_async
async def test_timeline_shows_versions_graph_and_flags(sample):
    root, ids = sample
    app = make_app(str(root / "ledger.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter")                                # run-1 is under the cursor
        await settle(pilot)
        rows = shown(app)
        cols = [c.key for c in table(app).columns]
        step, kind, edit, eff, flags = (cols.index(k) for k in ("step", "kind", "edit", "eff", "flags"))
        # base + 12 edits + the revert of step 3 + the reset to step 2
        assert len(rows) == 15
        assert rows[0][kind] == "base" and rows[0][0] == "○"
        assert rows[1][edit] == "Eiffel Tower: Paris → Rome" and rows[1][eff] == "1.00"
        assert rows[7][step] == "7" and "⚑ppl" in rows[7][flags] and "⚑ns" in rows[7][flags]
        assert rows[13][kind] == "revert" and rows[13][0].endswith("◆") and "├" in rows[13][0]
        assert rows[14][kind] == "reset" and rows[14][0].endswith("◉") and "HEAD" in rows[14][flags]
        assert "revert step 3" in rows[13][edit] and rows[14][edit] == "reset to step 2"
        # Δppl of step 7 = ppl(7) - ppl(6), from the ledger's own probes
        led = app.data.ledger
        traj = dict(led.trajectory(ids["runs"][0]["id"], "perplexity", "ppl", against="none"))
        dppl = cols.index("perplexity/ppl")
        assert rows[7][dppl] == f"+{traj[7] - traj[6]:.3f}"
        # the cursor starts on the newest version; filtering keeps matching rows only
        assert table(app).cursor_row == 14
        await pilot.press("slash", *"lyon", "enter")
        assert [r[edit] for r in shown(app)] == ["Lyon: Beirut → Manila"]


@run_async
async def test_detail_screen_request_deltas_probes(sample):
    root, ids = sample
    run1 = ids["runs"][0]
    app = make_app(str(root / "ledger.db"), run_id=run1["id"])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        t = table(app)
        t.move_to(7)                                              # step 7
        await pilot.press("enter")
        await settle(pilot)
        body = text_of(app, "#edit-text")
        assert "subject   Lyon" in body and "old → new Beirut → Manila" in body
        assert "Method    ROME" in body and "clamp_norm_factor" in body
        # the step's probe items come from the stream the run keeps in its config
        assert "Probes of this step (2 items" in body
        assert "In short, Lyon is a twin city of → Manila  (not Beirut)" in body
        assert f"checkout {run1['id']}@7 --export" in body
        await pilot.press("2")
        d = shown(app, "#delta-table")
        assert d == [["1", "transformer.h.1.mlp.fc_out.weight", "low_rank", "8×6", "1",
                      d[0][5], "56 B"]]
        stored = app.data.ledger.deltas(run1["versions"][6])[0]
        assert d[0][5] == f"{stored.norm:.4f}"
        await pilot.press("3")
        p = shown(app, "#probe-table")
        ppl = next(r for r in p if r[1] == "ppl")
        led = app.data.ledger
        here = [x for x in led.probes(run1["versions"][6]) if x.metric == "ppl"][0].value
        prev = [x for x in led.probes(run1["versions"][5]) if x.metric == "ppl"][0].value
        base = [x for x in led.probes(ids["base"]) if x.metric == "ppl"][0].value
        # no stored comparison for ppl: vs base / vs prev are differences computed from plain values
        assert ppl[2:5] == [f"{here:.3f}", f"+{here - base:.3f}", f"+{here - prev:.3f}"]
        # NKL is stored against the base only: shown as stored
        nkl_row = next(r for r in p if r[1] == "nkl")
        nkl = [x for x in led.probes(run1["versions"][6]) if x.metric == "nkl"][0]
        assert nkl.against == "base" and nkl_row[2:5] == ["–", f"{nkl.value:.3f}", "–"]
        assert "p_new=" in text_of(app, "#probe-detail")          # per-prompt detail of the first row
        await pilot.press("x")
        assert f"checkout {run1['id']}@7" in text_of(app, "#dialog-message")
        await pilot.press("escape", "escape")
        assert type(app.screen).__name__ == "TimelineScreen"


@run_async
async def test_diff_two_versions(sample):
    root, ids = sample
    run1 = ids["runs"][0]
    app = make_app(str(root / "ledger.db"), run_id=run1["id"])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        t = table(app)
        t.move_to(2)                                              # step 2
        await pilot.press("d")
        assert "diff from" in title(app)
        t.move_to(5)                                              # step 5
        await pilot.press("d")
        await settle(pilot)
        assert type(app.screen).__name__ == "DiffScreen"
        assert "A = v" in title(app) and "step 2" in title(app) and "step 5" in title(app)
        rows = shown(app, "#tensor-table")
        # steps 3, 4, 5 only on B; ROME edits layer 1 only
        assert rows[0][:3] == ["transformer.h.1.mlp.fc_out.weight", "", "3,4,5"]
        # reference: the same norm from torch in float64
        import torch
        led = app.data.ledger
        total = torch.zeros(8, 6, dtype=torch.float64)
        for vid in run1["versions"][2:5]:
            f = led.read_artifact(led.deltas(vid)[0].artifact_digest)
            total += f["u"].double() @ f["v"].double().T
        assert rows[0][3] == f"{total.norm().item():.4f}"
        m = shown(app, "#metric-table")
        ppl = next(r for r in m if r[0] == "perplexity/ppl")
        assert ppl[2] != "–" and ppl[3] != "–" and ppl[4].startswith("+")
        await pilot.press("w")                                    # swap
        assert shown(app, "#tensor-table")[0][1:3] == ["3,4,5", ""]


@run_async
async def test_audit_and_trajectories(sample):
    root, ids = sample
    run1 = ids["runs"][0]
    app = make_app(str(root / "ledger.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        rows = shown(app)
        assert [r[2] for r in rows] == ["perplexity.ppl", "neighborhood.ns"]
        assert rows[0][0] == "7" and rows[0][3] == "0.870"
        ev = text_of(app, "#evidence")
        assert "ppl_before: 21.9" in ev and "bisect: [1, 7, 12]" in ev
        await pilot.press("enter")
        await settle(pilot)
        assert type(app.screen).__name__ == "DetailScreen" and "step 7" in title(app)
        await pilot.press("escape")
        await pilot.press("t")
        await settle(pilot)
        scr = app.screen
        assert type(scr).__name__ == "TrajectoryScreen"
        assert [s.label for s in scr.series] == ["rewrite/efficacy_top1"]
        assert scr.series[0].steps[:3] == [1, 2, 3]
        assert scr.culprits == {run1["id"]: [7]}
        assert "audit culprit steps: 7" in text_of(app, "#legend")
        # overlay a second metric through the selection list
        sel = scr.query_one("#metric-list")
        sel.select(("perplexity", "ppl"))
        await settle(pilot)
        assert [s.label for s in scr.series] == ["rewrite/efficacy_top1", "perplexity/ppl"]
        traj = app.data.ledger.trajectory(run1["id"], "perplexity", "ppl", against="none")
        assert scr.series[1].values == [v for _, v in traj]
        await pilot.press("n")
        assert scr.normalise


@run_async
async def test_trajectories_overlay_marked_runs(sample):
    root, ids = sample
    app = make_app(str(root / "ledger.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("space", "down", "space", "t")
        await settle(pilot)
        labels = [s.label for s in app.screen.series]
        assert labels == ["run-1 rewrite/efficacy_top1", "run-2 rewrite/efficacy_top1"]


@run_async
async def test_help_screen_lists_keys(sample):
    root, _ = sample
    app = make_app(str(root / "ledger.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter", "question_mark")
        await settle(pilot)
        text = text_of(app, "#help-text")
        assert "Reset" in text and "Revert" in text and "Diff" in text and "graph column" in text
        await pilot.press("escape")
        assert type(app.screen).__name__ == "TimelineScreen"


@run_async
async def test_reset_head_with_confirmation(ledger_copy):
    db, ids = ledger_copy
    run1 = ids["runs"][0]
    app = make_app(db, run_id=run1["id"])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        before = len(shown(app))
        # the reset to step 2 moved the head; its lineage is base, step 1, step 2: reset to step 1
        table(app).move_to(1)
        await pilot.press("r")
        await settle(pilot)
        assert "Reset the head of run-1 to v" in text_of(app, "#dialog-message")
        await pilot.press("n")                                    # refused: nothing written
        await settle(pilot)
        assert len(app.data.ledger.timeline(run1["id"])) == before - 1
        table(app).move_to(1)
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        rows = shown(app)
        assert len(rows) == before + 1
        assert rows[-1][3] == "reset" and "HEAD" in rows[-1][-1]
        led = app.data.ledger
        run = led.run(run1["id"])
        head = led.version(run.head_version_id)
        assert head.kind == "reset" and head.parent_id == run1["versions"][0] and head.note == "reset to step 1"
        # a version left behind by an earlier reset can be the head again (history kept)
        table(app).move_to(10)                                    # step 10, off the head's line
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        head = led.version(led.run(run1["id"]).head_version_id)
        assert head.kind == "reset" and head.parent_id == run1["versions"][9]
        rows = shown(app)
        assert len(rows) == before + 2 and rows[-1][3] == "reset" and rows[-1][4] == "reset to step 10"
        assert table(app).rows[10].on_head and not table(app).rows[11].on_head


@run_async
async def test_revert_step_with_confirmation(ledger_copy):
    db, ids = ledger_copy
    run2 = ids["runs"][1]
    app = make_app(db, run_id=run2["id"])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table(app).move_to(4)                                     # step 4
        await pilot.press("v")
        await settle(pilot)
        assert "Revert step 4" in text_of(app, "#dialog-message")
        await pilot.press("y")
        await settle(pilot)
        rows = shown(app)
        assert rows[-1][3] == "revert" and "HEAD" in rows[-1][-1] and "revert step 4" in rows[-1][4]
        led = app.data.ledger
        head = led.version(led.run(run2["id"]).head_version_id)
        assert head.kind == "revert" and head.parent_id == run2["versions"][2]   # the version of step 3
        # its chain re-applies steps 5..12's artifacts, not step 4's
        carried = [d.artifact_digest for d in led.deltas(head.id)]
        later = [led.deltas(v)[0].artifact_digest for v in run2["versions"][4:]]
        assert carried == later
        # the diff head vs step 12 shows exactly step 4's delta on one side
        table(app).move_to(12)
        await pilot.press("d")
        table(app).move_to(len(rows) - 1)
        await pilot.press("d")
        await settle(pilot)
        t = shown(app, "#tensor-table")
        assert [r[1:3] for r in t] == [["4", ""]]
        step4 = led.deltas(run2["versions"][3])[0]
        assert t[0][3] == f"{step4.norm:.4f}"                     # exactly that delta's norm


@run_async
async def test_live_update_shows_new_steps(ledger_copy):
    """A step written by another writer appears on the next poll (the app polls every
    poll_interval seconds; here the poll is triggered directly to keep the test fast)."""
    db, ids = ledger_copy
    run2 = ids["runs"][1]
    app = make_app(db, run_id=run2["id"])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        n = len(shown(app))
        assert app.poll_ledger() is False                         # nothing changed yet
        from ledger import Ledger
        from ledger.records import ProbeRecord
        with Ledger.open(db) as writer:
            writer.record_step(run2["id"], step=13, parent_version_id=run2["versions"][-1], requests=[
                {"subject": "Mount Fuji", "prompt": "{} is in", "target_new": " Peru", "target_old": " Japan"}],
                deltas=[], tensor_fingerprints={}, diagnostics={}, wall_time_s=0.1,
                probes=[ProbeRecord("rewrite", "efficacy_top1", 1.0, count=1)])
        assert app.poll_ledger() is True
        await settle(pilot)
        rows = shown(app)
        assert len(rows) == n + 1 and rows[-1][4] == "Mount Fuji: Japan → Peru"
        assert table(app).cursor_row == n                         # the cursor on the last row follows
        await pilot.press("escape")                               # runs screen refreshes on resume
        await settle(pilot)
        assert shown(app)[1][4] == "13"


@run_async
async def test_mouse_rows_and_header_sort(sample):
    root, _ = sample
    app = make_app(str(root / "ledger.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        t = table(app)
        await pilot.click("#main", offset=(3, 2))                 # second data row (row 0 is the header)
        assert t.cursor_row == 1
        x_status = 1 + sum(w + 1 for w in t._layout_widths(t.size.width)[:5])   # start of "status"
        await pilot.click("#main", offset=(x_status + 1, 0))
        assert "sort: status" in title(app)
        assert [r[5] for r in shown(app)] == ["done", "interrupted"]
        await pilot.click("#main", offset=(x_status + 1, 0))     # again: reversed
        assert [r[5] for r in shown(app)] == ["interrupted", "done"]
        await pilot.click("#main", offset=(3, 1), times=2)        # double click opens the run
        await settle(pilot)
        assert type(app.screen).__name__ == "TimelineScreen" and "run-2" in title(app)


@run_async
async def test_timeline_dims_versions_off_the_head_line(sample):
    root, ids = sample
    app = make_app(str(root / "ledger.db"), run_id=ids["runs"][0]["id"])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        rows = table(app).rows
        # head = reset to step 2: its history is base, step 1, step 2, the reset marker
        assert [it.step for it in rows if it.on_head] == [0, 1, 2, 14]
        edit_col = [c.key for c in table(app).columns].index("edit")
        assert "dim" in str(table(app).formatter(rows[5])[edit_col].spans[-1].style)


def test_cli_tui_unknown_run_is_a_clean_error(sample, capsys):
    from editledger.cli import main
    root, _ = sample
    code = main(["--db", str(root / "ledger.db"), "tui", "no-such-run"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no run 'no-such-run'" in err and "Traceback" not in err


def test_cli_tui_missing_ledger_is_a_clean_error(tmp_path, capsys):
    from editledger.cli import main
    code = main(["--db", str(tmp_path / "absent.db"), "tui"])
    assert code == 2 and "no ledger at" in capsys.readouterr().err
    assert not (tmp_path / "absent.db").exists()                 # the TUI never creates a ledger


@run_async
async def test_empty_ledger_says_what_to_do_and_picks_up_a_new_run(tmp_path):
    from ledger import Ledger
    db = str(tmp_path / "empty.db")
    Ledger.open(db).close()                                       # an empty ledger at the current schema
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "No runs in this ledger yet" in text_of(app, "#empty") and "0 runs" in title(app)
        with Ledger.open(db) as led:                              # a replay starts meanwhile
            bm = led.register_base_model("tiny-gptj", "test", "c" * 64, {})
            led.begin_run(base_model_id=bm.id, method="ROME", hparams={}, stream_name="s.jsonl",
                          stream_digest="0" * 64, stream_kind="sequential")
        assert app.poll_ledger()
        await settle(pilot)
        assert [r[0] for r in shown(app)] == ["run-1"] and shown(app)[0][5] == "running"
        assert not app.screen.query_one("#empty").display


def test_refusals_say_why(ledger_copy):
    from ledger.errors import InputError
    db, ids = ledger_copy
    data = LedgerData.open(db)
    run1, run2 = ids["runs"][0]["id"], ids["runs"][1]["id"]
    with pytest.raises(InputError, match=f"is not a version of run {run1}"):
        data.reset(run1, ids["runs"][1]["versions"][3])
    # an edit off the head's history: revert goes through rollback and says why it cannot
    with pytest.raises(InputError, match="not in the history of its head"):
        data.revert(run1, 9)
    assert data.ledger.run(run2).head_version_id == ids["runs"][1]["versions"][-1]
    data.close()


def test_timeline_of_a_branch_run_starts_at_its_origin(ledger_copy):
    from ledger import Ledger
    db, ids = ledger_copy
    origin = ids["runs"][0]["versions"][4]                        # run 1, step 5
    with Ledger.open(db) as led:
        v = led.version(origin)
        run = led.begin_run(base_model_id=v.base_model_id, method="ROME", hparams={}, stream_name="b.jsonl",
                            stream_digest="1" * 64, stream_kind="sequential", parent_version_id=origin)
        marker = led.add_marker(run.id, kind="branch", parent_version_id=origin, step=5,
                                tensor_fingerprints={}, note="branch from run 1 step 5")
        led.record_step(run.id, step=6, parent_version_id=marker.id, requests=[
            {"subject": "Nile", "prompt": "The {} flows through", "target_new": " Chile", "target_old": " Egypt"}],
            deltas=[], tensor_fingerprints={}, diagnostics={}, wall_time_s=0.0)
    data = LedgerData.open(db)
    items, _ = data.timeline(run.id)
    assert [(it.step, it.kind, it.graph) for it in items] == [(5, "edit", "●"), (5, "branch", "◆"), (6, "edit", "◉")]
    assert items[0].note == f"branched from run {ids['runs'][0]['id']} step 5 (v{origin}, edit)"
    data.close()


def test_diff_norm_dense_sparse_and_low_rank_against_torch(ledger_copy):
    """‖W_B − W_A‖ from stored factors (numpy, float64) equals the torch float64 reference for
    a mix of low-rank, dense and sparse deltas on one tensor."""
    import torch
    from ledger import Ledger
    from ledger.records import DeltaInput
    db, ids = ledger_copy
    run2 = ids["runs"][1]
    g = torch.Generator().manual_seed(3)
    dense = torch.randn(8, 6, generator=g)
    idx, vals = torch.tensor([0, 7, 47]), torch.randn(3, generator=g)
    name = "transformer.h.1.mlp.fc_out.weight"
    with Ledger.open(db) as led:
        v13 = led.record_step(run2["id"], step=13, parent_version_id=run2["versions"][-1], requests=[
            {"subject": "a", "prompt": "{} is", "target_new": " b"}], tensor_fingerprints={}, diagnostics={},
            wall_time_s=0.0, deltas=[DeltaInput(name, "dense", {"delta": dense}, (8, 6), norm=float(dense.double().norm()))])
        v14 = led.record_step(run2["id"], step=14, parent_version_id=v13.id, requests=[
            {"subject": "c", "prompt": "{} is", "target_new": " d"}], tensor_fingerprints={}, diagnostics={},
            wall_time_s=0.0, deltas=[DeltaInput(name, "sparse", {"indices": idx, "values": vals}, (8, 6),
                                                norm=float(vals.double().norm()))])
    data = LedgerData.open(db)
    a = run2["versions"][9]                                       # step 10
    view = data.diff(a, v14.id)
    ref = torch.zeros(8, 6, dtype=torch.float64)
    for vid in run2["versions"][10:]:                             # steps 11, 12 (low-rank; layer 1 or 2)
        for d in data.ledger.deltas(vid):
            if d.tensor == name:
                f = data.ledger.read_artifact(d.artifact_digest)
                ref += f["u"].double() @ f["v"].double().T
    ref += dense.double()
    ref.view(-1)[idx] += vals.double()
    row = next(t for t in view.tensors if t.tensor == name)
    assert row.only_a == [] and row.only_b[-2:] == [13, 14]
    assert abs(row.norm - ref.norm().item()) < 1e-9 * max(1.0, ref.norm().item())
    assert row.bound >= row.norm - 1e-9                          # the triangle inequality
    data.close()
