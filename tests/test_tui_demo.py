"""On the measurements of a real `editledger demo` (12 ROME edits on the embedded Gemma 3 270M,
recorded in tests/data/demo-run.json by ``ledger_fixtures.write_dump``; the demo itself takes
minutes), the timeline alone answers "which edit failed, and when did forgetting begin?" — no
audit run first. The demo printed: step 8 (Stockholm: France → Germany) efficacy 0.00; retention
1.00 after step 2 and 0.50 after step 3."""
from __future__ import annotations

import json

import pytest

from ledger_fixtures import DEMO_DUMP, load_run
from tui.data import LedgerData
from tui_pilot import column, make_app, run_async, settle, shown, table, title


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("demo") / "ledger.db")
    run_id = load_run(db, json.loads(DEMO_DUMP.read_text(encoding="utf-8")))
    return db, run_id


@run_async
async def test_the_timeline_finds_the_failed_step_and_the_first_forgetting(demo):
    db, run_id = demo
    app = make_app(db, run_id)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        assert not app.data.ledger.audit_findings(run_id)          # nothing from an audit
        assert "1 failed (step 8)" in title(app) and "forgetting from step 3" in title(app)
        t = table(app)
        await pilot.press("home", "n")                              # the first row with harm
        first = t.current_item
        assert first.step == 3 and first.lost == [2]
        assert "forgot 2" in t.cell_texts(t.cursor_row)[column(app, "flags")]
        seen = [first.step]
        while True:                                                 # n walks every harmed row once
            await pilot.press("n")
            if t.current_item.step in seen:
                break
            seen.append(t.current_item.step)
        failed = [s for s in seen if t.rows[s].failed]
        assert failed == [8]
        assert t.cell_texts(8)[column(app, "eff")] == "0.00" and "✗failed" in t.cell_texts(8)[column(app, "flags")]
        # the round edit's back half (step 6) overwrites step 5's fact on purpose: not forgetting
        assert 6 not in seen and "supersedes 5" in t.cell_texts(6)[column(app, "flags")]
        # filter tokens find the same rows
        await pilot.press("slash", *"flag:forgetting", "enter")
        assert [it.step for it in t.rows] == [3, 4, 7, 11]
        await pilot.press("escape")
        await pilot.press("slash", *"eff<1", "enter")
        assert [it.step for it in t.rows] == [8]


@run_async
async def test_delta_columns_agree_with_the_detail_screen(demo):
    """Δnb.ns of every step equals the detail screen's "vs prev" of neighbourhood/ns (the demo's
    step 8 showed +0.500 on the timeline against vs prev 0.000); Δppl is filled at the steps
    perplexity was measured (4, 8, 12), against the previous measurement (the base's first)."""
    db, run_id = demo
    app = make_app(db, run_id)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        rows = shown(app)
        dns, dppl = column(app, "neighborhood/ns"), column(app, "perplexity/ppl")
        assert [r[dppl] != "·" for r in rows[1:13]] == [s in (4, 8, 12) for s in range(1, 13)]
        ppl = dict(app.data.ledger.trajectory(run_id, "perplexity", "ppl", against="none"))
        base = app.data._base_metrics(run_id, table(app).rows[0].version_id)["perplexity.ppl"]
        assert rows[4][dppl] == f"−{base - ppl[4]:.3f}" and rows[8][dppl] == f"+{ppl[8] - ppl[4]:.3f}"
        for step in range(1, 13):
            table(app).move_to(step)
            await pilot.press("enter")
            await settle(pilot)
            await pilot.press("3")
            ns = next(r for r in shown(app, "#probe-table") if r[:2] == ["neighborhood", "ns"])
            timeline = rows[step][dns]
            assert timeline == ns[4] or (timeline, ns[4]) == ("0", "0"), step
            if step == 8:
                assert timeline == "0"
            await pilot.press("escape")
            await settle(pilot)


def test_runs_summary_of_the_demo(demo):
    db, run_id = demo
    data = LedgerData.open(db)
    run = next(r for r in data.runs() if r.run_id == run_id)
    assert (run.edits_ok, run.edits) == (11, 12)
    assert run.held == pytest.approx(5 / 11)                        # the demo's "retain" at step 12: 0.45
    assert run.spark_metric == ("perplexity", "ppl") and len(run.spark) == 4   # the base, steps 4, 8, 12
    data.close()
