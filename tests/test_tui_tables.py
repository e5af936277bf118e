"""Every table sorts, filters, copies and exports what it shows; the command palette offers each
screen's actions; columns get the room they need (the flags column at 160 columns, a long stream
name on the runs screen)."""
from __future__ import annotations

import csv
import json
import shutil

import pytest

from ledger import Ledger
from ledger_fixtures import FORGET_STEP, build_sample_ledger
from tui_pilot import column, make_app, run_async, settle, table, title


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    ids = build_sample_ledger(str(root / "ledger.db"))
    return root, ids


@run_async
async def test_detail_tables_sort_by_a_header_click(sample):
    root, ids = sample
    app = make_app(str(root / "ledger.db"), ids["runs"][0]["id"])
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        table(app).move_to(7)
        await pilot.press("enter", "3")
        await settle(pilot)
        t = table(app, "#probe-table")
        x_here = 1 + sum(w + 1 for w in t._layout_widths(t.scrollable_content_region.width)[:2])
        await pilot.click("#probe-table", offset=(x_here + 2, 0))
        values = [it.value for it in t.rows if it.value is not None]
        assert values == sorted(values) and t.rows[-1].value is None    # missing values last
        await pilot.click("#probe-table", offset=(x_here + 2, 0))
        values = [it.value for it in t.rows if it.value is not None]
        assert values == sorted(values, reverse=True)


@run_async
async def test_timeline_filter_tokens_copy_and_export(sample, tmp_path):
    root, ids = sample
    app = make_app(str(root / "ledger.db"), ids["runs"][0]["id"])
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"flag:forgetting", "enter")
        assert [it.step for it in table(app).rows] == [FORGET_STEP]
        await pilot.press("escape")
        await pilot.press("slash", *"kind:re step>12", "enter")
        assert [it.kind for it in table(app).rows] == ["revert", "reset"]
        await pilot.press("escape")
        await pilot.press("slash", *"ppl>3", "enter")             # no such field: said in the title
        assert "no field 'ppl>3'" not in title(app) and "no field 'ppl' here" in title(app)
        await pilot.press("escape")
        await pilot.press("slash", *"Δns<-0.1", "enter")          # the neighbourhood score fell by > 0.1
        assert [it.step for it in table(app).rows] == [7]
        await pilot.press("c")
        assert "step: 7" in table(app).copied and "flags: ⚑ppl ⚑nb.ns" in table(app).copied
        out = tmp_path / "rows.csv"
        await pilot.press("e")
        await settle(pilot)
        app.screen.query_one("#prompt").value = str(out)
        await pilot.press("enter")
        await settle(pilot)
        with out.open() as f:
            rows = list(csv.reader(f))
        assert rows[0][:3] == ["graph", "step", "ver"] and [r[1] for r in rows[1:]] == ["7"]
        await pilot.press("e")
        await settle(pilot)
        app.screen.query_one("#prompt").value = str(tmp_path / "rows.json")
        await pilot.press("enter")
        await settle(pilot)
        data = json.loads((tmp_path / "rows.json").read_text())
        assert data[0]["step"] == "7" and data[0]["Δnb.ns"].startswith("−")


@run_async
async def test_command_palette_offers_the_screens_actions(sample):
    root, ids = sample
    app = make_app(str(root / "ledger.db"), ids["runs"][0]["id"])
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Next harm (n)" in titles and "Run audit (A)" in titles and "Revert (v)" in titles
        await pilot.press("ctrl+p")
        await settle(pilot)
        assert type(app.screen).__name__ == "CommandPalette"


@run_async
async def test_columns_get_the_room_they_need(sample, tmp_path):
    root, ids = sample
    shutil.copytree(root, tmp_path / "copy")
    db = str(tmp_path / "copy" / "ledger.db")
    with Ledger.open(db) as led:
        bm = led.base_models()[0]
        led.begin_run(base_model_id=bm.id, method="ROME", hparams={}, stream_digest="0" * 64,
                      stream_name="/data/benchmarks/counterfact/counterfact-sequential-2000-edits-seed-17-shuffled.jsonl",
                      stream_kind="sequential")
    app = make_app(db)
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(pilot)
        t = table(app)
        widths = dict(zip([c.key for c in t.columns], t._layout_widths(t.scrollable_content_region.width)))
        assert widths["stream"] == 24                             # a long stream name is cut, not 90 wide
        line = "".join(seg.text for seg in t.render_line(3))       # run-3's row, as drawn
        assert "/data/benchmarks/counte… " in line
        await pilot.press("enter")                                # run-1's timeline at 160 columns
        await settle(pilot)
        t = table(app)
        widths = dict(zip([c.key for c in t.columns], t._layout_widths(t.scrollable_content_region.width)))
        flags = t.cell_texts(FORGET_STEP)[column(app, "flags")]
        assert len(flags) <= widths["flags"] and widths["flags"] >= 30


@run_async
async def test_detail_and_diff_tables_filter_and_keep_their_last_column(sample):
    root, ids = sample
    app = make_app(str(root / "ledger.db"), ids["runs"][0]["id"])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table(app).move_to(7)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("slash", *"suite:neighborhood", "enter")    # from the Edit pane: the probes
        assert {it.suite for it in table(app, "#probe-table").rows} == {"neighborhood"}
        await pilot.press("escape")
        assert len({it.suite for it in table(app, "#probe-table").rows}) > 1
        await pilot.press("escape")
        assert type(app.screen).__name__ == "TimelineScreen"
        table(app).move_to(2)
        await pilot.press("d")
        table(app).move_to(8)
        await pilot.press("d")
        await settle(pilot)
        t = table(app, "#metric-table")
        assert t.max_scroll_y > 0                                  # a scrollbar takes two columns
        header = "".join(seg.text for seg in t.render_line(0)).rstrip()
        assert header.endswith("B−A")                              # not clipped to "B−"
        t.focus()
        await pilot.press("slash", *"metric:ppl", "enter")
        assert [it.metric for it in t.rows] and {it.metric for it in t.rows} == {"ppl"}
