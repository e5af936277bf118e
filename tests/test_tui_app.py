"""Drive the TUI with Pilot through every screen and both writes on the sample ledger
(tests/ledger_fixtures.py), asserting on what is shown."""
from __future__ import annotations

import shutil

import pytest
import torch

from ledger import Ledger
from ledger.errors import InputError
from ledger.records import DeltaInput, ProbeRecord
from ledger_fixtures import FAILED_STEP, FORGET_STEP, build_sample_ledger
from tui.data import LedgerData
from tui_pilot import SIZE, column, make_app, run_async, settle, shown, table, text_of, title


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


@run_async
async def test_runs_screen_shows_what_each_run_did(sample):
    root, ids = sample
    app = make_app(str(root / "ledger.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        rows = shown(app)
        assert [r[0] for r in rows] == ["run-1", "run-2"]
        # steps: the highest recorded step (12 edits, then the revert recorded as step 13)
        assert rows[0][1:6] == ["tiny-gptj", "ROME", "counterfact-12.jsonl", "13", "done"]
        assert rows[1][2] == "MEMIT" and rows[1][5] == "interrupted"
        header = [c.label for c in table(app).columns]
        assert header[6:9] == ["ok", "held", "ppl×"]
        # run 1: step 5's edit failed, so 11 of 12 took (not the last step's efficacy, which is 1)
        assert rows[0][6] == "11/12" and rows[1][6] == "12/12"
        # run 2's head is step 12, measured: ppl 22.487 against the base's 18.0 from the run's reference
        ppl = app.data.ledger.trajectory(ids["runs"][1]["id"], "perplexity", "ppl", against="none")
        assert rows[1][8] == f"{ppl[-1][1] / 18.0:.2f}×"
        # run 1's head is a reset to step 2: no perplexity measured on its line, so none is claimed
        assert rows[0][8] == "–" and rows[0][7] == "1.00"
        assert header[9] == "ppl"                                 # the sparkline's metric
        assert len(rows[1][9]) == 4 and set(rows[1][9]) <= set("▁▂▃▄▅▆▇█")   # base + steps 4, 8, 12
        legend = text_of(app, "#legend")
        assert "ok: edits that took" in legend and "ppl×: perplexity at the head ÷ the base's" in legend
        assert "2 runs" in title(app)
        await pilot.press("slash", *"memit", "enter")
        assert [r[0] for r in shown(app)] == ["run-2"]
        assert "filter: memit" in title(app) and "1 of 2 runs" in title(app)
        await pilot.press("escape")                               # clears the filter
        assert len(shown(app)) == 2
        await pilot.press("slash", *"ok<1", "enter")              # a field comparison
        assert [r[0] for r in shown(app)] == ["run-1"]
        await pilot.press("escape")
        # s sorts by the next column, S reverses
        await pilot.press("s", "s", "s")
        assert "sort: method ↑" in title(app)
        assert [r[2] for r in shown(app)] == ["MEMIT", "ROME"]
        await pilot.press("S")
        assert [r[2] for r in shown(app)] == ["ROME", "MEMIT"] and "sort: method ↓" in title(app)


@run_async
async def test_timeline_rows_graph_and_harm(sample):
    root, ids = sample
    run1 = ids["runs"][0]
    app = make_app(str(root / "ledger.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter")                                # run-1 is under the cursor
        await settle(pilot)
        rows = shown(app)
        step, kind, edit, eff, ret, flags = (column(app, k) for k in ("step", "kind", "edit", "eff", "ret", "flags"))
        assert len(rows) == 15                                    # base + 12 edits + revert + reset
        assert rows[0][kind] == "base" and rows[0][0] == "○"
        assert rows[1][edit] == "Eiffel Tower: Paris → Rome" and rows[1][eff] == "1.00"
        # harm at a glance: the failed edit, the forgetting step, the audit's flags naming their suite
        assert rows[FAILED_STEP][eff] == "0.00" and "✗failed" in rows[FAILED_STEP][flags]
        assert "forgot 2" in rows[FORGET_STEP][flags] and rows[FORGET_STEP][ret] == "0.67"
        assert "⚑ppl" in rows[7][flags] and "⚑nb.ns" in rows[7][flags]
        assert "⚑forgetting" in rows[FORGET_STEP][flags]
        # the reset and the revert are linked to the versions they go back to (both children of step 2)
        assert rows[2][0] == "●─┬─╮"
        assert rows[13][kind] == "revert" and rows[13][0] == "  ◆ │" and f"↖ v{run1['versions'][1]} (step 2)" in rows[13][edit]
        assert rows[14][kind] == "reset" and rows[14][0] == "    ◉" and "HEAD" in rows[14][flags]
        # the title counts edits (not the marker steps) and names the head and the run's harm
        t = title(app)
        assert "12 edits" in t and f"head v{ids['reset']} = step 14 (reset)" in t
        assert f"1 failed (step {FAILED_STEP})" in t and f"forgetting from step {FORGET_STEP}" in t
        assert table(app).cursor_row == 14                        # the newest version first in view
        await pilot.press("slash", *"lyon", "enter")
        assert [r[edit] for r in shown(app)] == ["Lyon: Beirut → Manila"]


@run_async
async def test_timeline_delta_columns_compare_the_same_prompts(sample):
    """Δnb.ns is the neighbourhood score's change on the step's own prompts (the comparison the
    probes stored), not the difference of two steps' scores on different prompts; Δppl is the
    change since the previous measurement (every 4 steps, the base's value first)."""
    root, ids = sample
    run1 = ids["runs"][0]
    app = make_app(str(root / "ledger.db"), run_id=run1["id"])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        rows, led = shown(app), app.data.ledger
        dns, dppl = column(app, "neighborhood/ns"), column(app, "perplexity/ppl")
        for step in (3, 7):
            stored = [p.value for p in led.probes(run1["versions"][step - 1], "neighborhood")
                      if p.metric == "ns" and p.against == "previous"][0]
            assert rows[step][dns] == f"{'+' if stored > 0 else '−'}{abs(stored):.3f}"
        ppl = dict(led.trajectory(run1["id"], "perplexity", "ppl", against="none"))
        assert rows[4][dppl] == f"+{ppl[4] - 18.0:.3f}"          # the first measurement, against the base
        assert rows[8][dppl] == f"+{ppl[8] - ppl[4]:.3f}"         # then against the previous measurement
        assert rows[5][dppl] == "·"                              # not measured at step 5


@run_async
async def test_detail_screen_request_deltas_probes(sample):
    root, ids = sample
    run1 = ids["runs"][0]
    app = make_app(str(root / "ledger.db"), run_id=run1["id"])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table(app).move_to(7)                                     # step 7
        await pilot.press("enter")
        await settle(pilot)
        body = text_of(app, "#edit-text")
        assert "subject   Lyon" in body and "old → new Beirut → Manila" in body
        assert "Method    ROME" in body and "clamp_norm_factor" in body
        assert "Probes of this step (2 items" in body
        assert "In short, Lyon is a twin city of → Manila  (not Beirut)" in body
        assert f"checkout {run1['id']}@7 --export" in body
        assert "Audit findings on this step (2)" in body and "⚑ perplexity.ppl" in body
        assert text_of(app, "#outcome").startswith("✓ edit took") and "⚑ 2 audit findings" in text_of(app, "#outcome")
        await pilot.press("2")
        await settle(pilot)
        d = shown(app, "#delta-table")
        stored = app.data.ledger.deltas(run1["versions"][6])[0]
        assert d[0][:6] == ["1", "transformer.h.1.mlp.fc_out.weight", "7", "low_rank", "8×6", "1"]
        assert d[0][6] == f"{stored.norm:.4f}" and d[0][9] == "56 B"
        await pilot.press("3")
        p = shown(app, "#probe-table")
        led = app.data.ledger
        ns_row = next(r for r in p if r[1] == "ns")
        rows = {x.against: x.value for x in led.probes(run1["versions"][6]) if x.metric == "ns"}
        assert ns_row[2:5] == [f"{rows['none']:.3f}", f"−{-rows['base']:.3f}", f"−{-rows['previous']:.3f}"]
        nkl_row = next(r for r in p if r[1] == "nkl")
        nkl = [x for x in led.probes(run1["versions"][6]) if x.metric == "nkl"][0]
        assert nkl.against == "base" and nkl_row[2:5] == ["–", f"{nkl.value:.3f}", "–"]
        assert "p=" in text_of(app, "#probe-detail")              # per-prompt detail of the first row
        await pilot.press("x")
        assert f"checkout {run1['id']}@7" in text_of(app, "#dialog-message")
        await pilot.press("escape", "escape")
        assert type(app.screen).__name__ == "TimelineScreen"


@run_async
async def test_weight_norms_from_keyframes_against_torch(sample):
    """‖W‖ of the tensor each delta was applied to, from the keyframe of step 4 or 8 (forwards
    or backwards), equals W0 plus the deltas before the step, in float64."""
    root, ids = sample
    run1 = ids["runs"][0]
    name = "transformer.h.1.mlp.fc_out.weight"
    data = LedgerData.open(str(root / "ledger.db"))
    w = run1["weights"][name].double().clone()
    expected = {}
    for step, vid in enumerate(run1["versions"], start=1):
        expected[step] = w.norm().item()                          # the weights before this step's delta
        f = data.ledger.read_artifact(data.ledger.deltas(vid)[0].artifact_digest)
        w += f["u"].double() @ f["v"].double().T
    for step in (1, 3, 4, 6, 12):
        vid = run1["versions"][step - 1]
        got = data.weight_norms(vid, data.detail(vid).deltas)[name]
        assert got == pytest.approx(expected[step], rel=1e-6), step   # keyframes are float32 copies
    data.close()


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
        assert rows[0][:3] == ["transformer.h.1.mlp.fc_out.weight", "", "3-5"]   # ROME edits layer 1 only
        led = app.data.ledger
        total = torch.zeros(8, 6, dtype=torch.float64)
        for vid in run1["versions"][2:5]:
            f = led.read_artifact(led.deltas(vid)[0].artifact_digest)
            total += f["u"].double() @ f["v"].double().T
        assert rows[0][3] == f"{total.norm().item():.4f}"
        m = shown(app, "#metric-table")
        # step suites measured each version's own prompts: no B−A for them; only fixed sets compare
        ns = next(r for r in m if r[0] == "neighborhood/ns" and r[1] == "")
        assert ns[2] != "–" and ns[3] != "–" and ns[4] == "≠items"
        assert "B−A for the 0 measured on the same items" in text_of(app, "#metric-caption")
        await pilot.press("w")                                    # swap
        assert shown(app, "#tensor-table")[0][1:3] == ["3-5", ""]


@run_async
async def test_audit_evidence_in_words_and_plot_of_the_finding(sample):
    root, ids = sample
    run1 = ids["runs"][0]
    app = make_app(str(root / "ledger.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        rows = shown(app)
        assert [r[2] for r in rows] == ["retention.forgetting", "perplexity.ppl", "neighborhood.ns"]
        ev = text_of(app, "#evidence")
        # no raw JSON, no \u escapes; a NaN probability says it was not measured
        assert "forgot step 2 (Danielle Darrieux: French → English): P(new) not measured → 0.100" in ev
        assert "\\u2192" not in ev and "NaN" not in ev and "nan" not in ev
        await pilot.press("c")
        assert "forgot step 2" in table(app).copied
        await pilot.press("down")
        assert "ppl_before: 21.900" in text_of(app, "#evidence") and "bisect: [1, 7, 12]" in text_of(app, "#evidence")
        await pilot.press("t")                                    # plots the finding's metric
        await settle(pilot)
        assert [s.label for s in app.screen.series] == ["perplexity/ppl"]
        assert app.screen.culprits == {run1["id"]: [FORGET_STEP, 7]}
        await pilot.press("escape")
        await pilot.press("enter")
        await settle(pilot)
        assert type(app.screen).__name__ == "DetailScreen" and "step 7" in title(app)


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
async def test_help_lists_keys_columns_and_filter_fields(sample):
    root, _ = sample
    app = make_app(str(root / "ledger.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter", "question_mark")
        await settle(pilot)
        text = text_of(app, "#help-text")
        assert "Reset" in text and "Revert" in text and "Diff" in text and "graph column" in text
        assert "Next harm" in text and "Run audit" in text
        assert "eff        rewrite efficacy" in text and "(0–1; red below 1: the edit failed)" in text
        assert "Δnb.ns" in text and "Fields here: " in text and "flag" in text
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
        head = led.version(led.run(run1["id"]).head_version_id)
        assert head.kind == "reset" and head.parent_id == run1["versions"][0] and head.note == "reset to step 1"
        # the header follows the reset (it used to keep the run's step count)
        assert f"head v{head.id} = step 15 (reset)" in title(app)
        table(app).move_to(10)                                    # step 10, off the head's line
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        head = led.version(led.run(run1["id"]).head_version_id)
        assert head.kind == "reset" and head.parent_id == run1["versions"][9]
        rows = shown(app)
        assert len(rows) == before + 2 and rows[-1][3] == "reset" and rows[-1][4].startswith("reset to step 10")
        assert f"head v{head.id} = step 16 (reset)" in title(app)
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
        carried = [d.artifact_digest for d in led.deltas(head.id)]
        later = [led.deltas(v)[0].artifact_digest for v in run2["versions"][4:]]
        assert carried == later
        # its detail: the re-applied deltas keep the step they came from; not measured yet
        await pilot.press("enter")
        await settle(pilot)
        assert "revert of step 4 (re-applies steps 5-12)" in text_of(app, "#outcome")
        assert "not measured yet: press p to re-probe it" in text_of(app, "#outcome")
        await pilot.press("2")
        assert [r[2] for r in shown(app, "#delta-table")] == [str(s) for s in range(5, 13)]
        await pilot.press("3")
        assert "A revert is recorded without measurements" in text_of(app, "#probes-note")
        await pilot.press("escape")
        # the diff head vs step 12 shows exactly step 4's delta on one side, labelled with step 4
        table(app).move_to(12)
        await pilot.press("d")
        table(app).move_to(len(rows) - 1)
        await pilot.press("d")
        await settle(pilot)
        t = shown(app, "#tensor-table")
        assert [r[1:3] for r in t] == [["4", ""]]
        assert t[0][3] == f"{led.deltas(run2['versions'][3])[0].norm:.4f}"


@run_async
async def test_diff_labels_a_reverts_reapplied_steps_with_their_own(ledger_copy):
    """Diff of step 2 against a revert of step 3 on top of step 12: B applied steps 4..12 through
    the revert (each labelled with its own step, once), A applied none of them."""
    db, ids = ledger_copy
    run2 = ids["runs"][1]
    with Ledger.open(db) as led:
        from ledger import history
        rv = history.revert(led, run2["id"], 3)
    data = LedgerData.open(db)
    view = data.diff(run2["versions"][1], rv.id)
    steps = sorted(s for t in view.tensors for s in t.only_b)
    assert steps == list(range(4, 13)) and all(not t.only_a for t in view.tensors)
    data.close()


@run_async
async def test_live_update_shows_new_steps(ledger_copy):
    """A step written by another writer appears on the next poll (triggered directly here)."""
    db, ids = ledger_copy
    run2 = ids["runs"][1]
    app = make_app(db, run_id=run2["id"])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        n = len(shown(app))
        assert app.poll_ledger() is False                         # nothing changed yet
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
        assert "sort: status ↑" in title(app)
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
        edit_col = column(app, "edit")
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
    db, ids = ledger_copy
    data = LedgerData.open(db)
    run1, run2 = ids["runs"][0]["id"], ids["runs"][1]["id"]
    with pytest.raises(InputError, match=f"is not a version of run {run1}"):
        data.reset(run1, ids["runs"][1]["versions"][3])
    with pytest.raises(InputError, match="not in the history of its head"):
        data.revert(run1, 9)
    assert data.ledger.run(run2).head_version_id == ids["runs"][1]["versions"][-1]
    data.close()


def test_timeline_of_a_branch_run_starts_at_its_origin(ledger_copy):
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
