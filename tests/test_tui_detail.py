"""The detail screen: no resume state printed, keys that scroll at once, a word where a version
has no probes, an outcome line (did the edit take; did a revert repair anything once measured)."""
from __future__ import annotations

import shutil

import pytest

from ledger import Ledger
from ledger.records import ProbeRecord
from ledger_fixtures import FAILED_STEP, build_sample_ledger
from tui_pilot import make_app, run_async, settle, table, text_of


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("detail")
    ids = build_sample_ledger(str(root / "ledger.db"))
    return root, ids


@pytest.fixture
def ledger_copy(sample, tmp_path):
    root, ids = sample
    shutil.copytree(root, tmp_path / "l")
    return str(tmp_path / "l" / "ledger.db"), ids


async def open_detail(pilot, row: int) -> None:
    await settle(pilot)
    table(pilot.app).move_to(row)
    await pilot.press("enter")
    await settle(pilot)


@run_async
async def test_edit_tab_hides_the_resume_state(sample):
    root, ids = sample
    app = make_app(str(root / "ledger.db"), ids["runs"][0]["id"])
    async with app.run_test(size=(100, 30)) as pilot:
        await open_detail(pilot, 3)
        body = text_of(app, "#edit-text")
        assert "loss" in body and "xxxx" not in body             # the diagnostics, without _probe_state's bytes
        assert "_probe_state             (the replay's resume state, 2.0 KiB: not shown)" in body


@run_async
async def test_edit_tab_scrolls_at_once_and_tab_is_in_the_footer(sample):
    root, ids = sample
    app = make_app(str(root / "ledger.db"), ids["runs"][0]["id"])
    async with app.run_test(size=(80, 16)) as pilot:              # short: the Edit tab must scroll
        await open_detail(pilot, 3)
        scroll = app.screen.query_one("#edit")
        assert scroll.max_scroll_y > 0 and scroll.scroll_y == 0
        await pilot.press("down")
        await pilot.pause()
        assert scroll.scroll_y == 1
        await pilot.press("pagedown")
        await pilot.pause()
        assert scroll.scroll_y > 1
        assert "tab Next pane" in str(app.screen.query_one("KeyBar").render())
        await pilot.press("tab")                                  # the next pane, focused
        assert app.screen.focused.id == "delta-table"
        await pilot.press("tab")
        assert app.screen.focused.id == "probe-table"
        await pilot.press("1")
        assert app.screen.focused.id == "edit"


@run_async
async def test_versions_without_probes_say_why(sample):
    root, ids = sample
    run1 = ids["runs"][0]
    app = make_app(str(root / "ledger.db"), run1["id"])
    async with app.run_test(size=(100, 30)) as pilot:
        await open_detail(pilot, 0)                               # the base
        assert text_of(app, "#outcome").startswith("○ the base model")
        await pilot.press("3")
        assert "The base model has no probe rows of its own" in text_of(app, "#probes-note")
        await pilot.press("escape")
        await open_detail(pilot, 14)                              # the reset to step 2: its target's probes
        assert "reset: the head went back to step 2" in text_of(app, "#outcome")
        await pilot.press("3")
        note = text_of(app, "#probes-note")
        assert f"A reset has the weights of v{run1['versions'][1]} (step 2)" in note
        assert len(table(app, "#probe-table").rows) > 0


@run_async
async def test_outcome_of_a_failed_edit(sample):
    root, ids = sample
    app = make_app(str(root / "ledger.db"), ids["runs"][0]["id"])
    async with app.run_test(size=(120, 30)) as pilot:
        await open_detail(pilot, FAILED_STEP)
        line = text_of(app, "#outcome")
        # the fixture's rewrite detail: P(new) 0.08 against P(old) 0.70
        assert line.startswith("✗ edit failed: P(new Helsinki) 0.08 vs P(old Zwolle) 0.70")


@run_async
async def test_a_reverts_outcome_once_it_is_measured(ledger_copy):
    """A revert of the step that hurt (7) on top of step 12, then measured (as `editledger probe`
    would record it): the outcome compares it with the head it replaced and says it repaired."""
    db, ids = ledger_copy
    run2 = ids["runs"][1]
    from ledger import history
    with Ledger.open(db) as led:
        rv = history.revert(led, run2["id"], 7)
        before = {(p.suite, p.metric): p.value for p in led.probes(run2["versions"][-1]) if p.against == "none"}
        led.record_probes(rv.id, [ProbeRecord("perplexity", "ppl", before[("perplexity", "ppl")] - 2.0, count=64),
                                  ProbeRecord("retention", "efficacy_top1", 1.0, count=11)])
    app = make_app(db, run2["id"])
    async with app.run_test(size=(160, 30)) as pilot:
        await open_detail(pilot, 13)
        line = text_of(app, "#outcome")
        assert line.startswith("↶ revert of step 7 (re-applies steps 8-12)")
        ppl = before[("perplexity", "ppl")]
        assert f"ppl {ppl:.3f} → {ppl - 2.0:.3f}" in line
        assert f"vs the head it replaced (v{run2['versions'][-1]}): repaired" in line
