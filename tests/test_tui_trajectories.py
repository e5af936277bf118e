"""Trajectories: integer step ticks, the base at step 0, markers on sparse series, a y axis that
does not turn a small change into a cliff, `n` that says what it did, small multiples, and a
metric list whose first ↓ + space adds a metric instead of removing the default."""
from __future__ import annotations

import re

import pytest

from ledger import Ledger
from ledger.records import ProbeRecord
from ledger_fixtures import BASE_PPL, build_sample_ledger
from tui_pilot import make_app, run_async, settle


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("traj") / "ledger.db"
    ids = build_sample_ledger(str(path))
    with Ledger.open(str(path)) as led:     # a metric that starts at 0 (forgetting does, at step 2)
        assert [v for _s, v in led.trajectory(ids["runs"][1]["id"], "retention", "forgetting")][0] == 0.0
    return str(path), ids


def plot_text(app) -> str:
    plot = app.screen.query_one("#plot")
    return re.sub(r"\x1b\[[0-9;]*m", "", plot.plt.build())


@run_async
async def test_ticks_base_point_and_axis(db):
    path, ids = db
    run2 = ids["runs"][1]["id"]
    app = make_app(path, run2)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        scr = app.screen
        sel = scr.query_one("#metric-list")
        # first visit: the default metric is selected and highlighted; ↓ + space adds the next one
        assert scr.chosen == [("rewrite", "efficacy_top1")]
        await pilot.press("down", "space")
        await settle(pilot)
        assert scr.chosen == [("rewrite", "efficacy_top1"), ("retention", "efficacy_top1")]
        sel.deselect_all()
        sel.select(("perplexity", "ppl"))
        await settle(pilot)
        s = scr.series[0]
        assert s.steps == [0, 4, 8, 12] and s.values[0] == BASE_PPL and s.base_step == 0   # the base at step 0
        assert scr.ticks == list(range(0, 13))                    # integer ticks
        axis = plot_text(app).splitlines()[-2]                    # the x tick labels
        assert re.findall(r"\d+(?:\.\d+)?", axis) == [str(i) for i in range(13)]
        # ppl 18.0 → 22.5: the axis spans the data (a 25% change) with a margin, not 0..max
        lo, hi = scr.ylim
        assert lo < 18.0 and hi > max(s.values) and hi - lo < 8
        assert "●" in plot_text(app)                              # measured every 4 steps: markers
        assert "base 18.000 at step 0" in str(scr.query_one("#legend").render())


@run_async
async def test_relative_says_how_and_handles_a_zero_start(db):
    path, ids = db
    app = make_app(path, ids["runs"][1]["id"])
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        scr = app.screen
        sel = scr.query_one("#metric-list")
        sel.deselect_all()
        sel.select(("retention", "forgetting"))
        sel.select(("perplexity", "ppl"))
        await settle(pilot)
        await pilot.press("n")
        forgetting = next(i for i, s in enumerate(scr.series) if s.metric == ("retention", "forgetting"))
        ppl = next(i for i, s in enumerate(scr.series) if s.metric == ("perplexity", "ppl"))
        assert scr.notes[forgetting] == "minus its first value (0)"
        assert scr.plotted[forgetting] == [v - 0.0 for v in scr.series[forgetting].values]
        assert scr.notes[ppl] == "÷ its first value" and scr.plotted[ppl][0] == 1.0
        legend = str(scr.query_one("#legend").render())
        assert "retention/forgetting" in legend and "minus its first value (0)" in legend
        await pilot.press("m")                                    # one small plot per metric
        assert [t for t, _ in scr._groups()] == ["retention/forgetting", "perplexity/ppl"] or \
            [t for t, _ in scr._groups()] == ["perplexity/ppl", "retention/forgetting"]
        assert plot_text(app).count("step") == 2


@run_async
async def test_a_small_change_is_not_a_cliff(tmp_path):
    """Perplexity wobbling by 1% around 29: the y axis spans at least 10% of the values."""
    db = str(tmp_path / "l.db")
    with Ledger.open(db) as led:
        bm = led.register_base_model("m", "test", "a" * 64, {})
        run = led.begin_run(base_model_id=bm.id, method="ROME", hparams={}, stream_name="s", stream_digest="0" * 64,
                            stream_kind="sequential")
        parent = run.head_version_id
        for step, ppl in enumerate([29.1, 28.86, 28.92, 28.61], start=1):
            parent = led.record_step(run.id, step=step, parent_version_id=parent, requests=[
                {"subject": "s", "prompt": "{} is", "target_new": " x"}], deltas=[], tensor_fingerprints={},
                diagnostics={}, wall_time_s=0.0, probes=[ProbeRecord("perplexity", "ppl", ppl, count=1)]).id
    app = make_app(db, run.id)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        lo, hi = app.screen.ylim
        assert hi - lo >= 0.1 * 29.1
