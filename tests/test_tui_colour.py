"""Semantic colour reaches the terminal: the styles of the segments the timeline draws (LazyTable's
lines, then the compositor's strips, which is what a terminal receives). Cells coloured with
Text(..., style=...) used to lose their style in LazyTable's line rendering (rich's Text.render
yields only the spans' styles), so no red, green, yellow or magenta was ever drawn."""
from __future__ import annotations

import pytest
from rich.style import Style

from ledger_fixtures import FAILED_STEP, build_sample_ledger
from tui_pilot import column, make_app, run_async, settle, table


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("colour") / "ledger.db"
    ids = build_sample_ledger(str(path))
    return str(path), ids


def _segment(strip, text: str):
    """The segment of a rendered line that holds ``text`` (stripped)."""
    for seg in strip:
        if seg.text.strip() == text:
            return seg
    raise AssertionError(f"{text!r} not in {[s.text for s in strip]}")


def _color(style: Style) -> str | None:
    return style.color.name if style.color is not None else None


@run_async
async def test_timeline_cells_keep_their_colours(db):
    path, ids = db
    app = make_app(path, ids["runs"][0]["id"])
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(pilot)
        t = table(app)
        t.move_to(0)                                   # keep the cursor's own colours off the rows below
        await settle(pilot)
        y = lambda row: row + 1 - round(t.scroll_y)   # line 0 is the header
        eff = t.cell_texts(FAILED_STEP)[column(app, "eff")]
        assert _color(_segment(t.render_line(y(FAILED_STEP)), eff).style) == "red"        # the failed edit
        assert _segment(t.render_line(y(FAILED_STEP)), "✗failed").style.bold
        dns = t.cell_texts(7)[column(app, "neighborhood/ns")]
        assert dns.startswith("−") and _color(_segment(t.render_line(y(7)), dns).style) == "red"   # ns fell
        assert _color(_segment(t.render_line(y(13)), "revert").style) == "magenta"
        assert _color(_segment(t.render_line(y(14)), "reset").style) == "yellow"
        assert _color(_segment(t.render_line(y(14)), "HEAD").style) == "cyan"
        # and through the compositor: what the terminal gets is a colour other than the text's default
        default = _segment(t.render_line(y(1)), "Eiffel Tower: Paris → Rome").style.color
        strips = app.screen._compositor.render_strips()
        row = strips[1 + y(FAILED_STEP)]              # the title bar is line 0 of the screen
        failed = _segment(row, "✗failed")
        assert failed.style.color is not None and failed.style.color != default


@run_async
async def test_runs_status_and_failed_edits_are_coloured(db):
    path, _ = db
    app = make_app(path)
    async with app.run_test(size=(120, 20)) as pilot:
        await settle(pilot)
        t = table(app)
        line = t.render_line(1 + 1)                    # run-2 (the cursor is on run-1)
        assert _color(_segment(line, "interrupted").style) == "yellow"
        assert _color(_segment(t.render_line(1), "11/12").style) == "red"
