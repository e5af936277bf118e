"""Pure helpers checked against hand-computed values: formatting, the version graph, filter
tokens, plot axes, and the harm rules (which comparison a Δ uses, who forgot what)."""
import math

import pytest

from tui import format as F
from tui import harm
from tui.data import layer_of
from tui.filters import Field, FilterError, compile_filter
from tui.graph import graph_lanes
from tui.metrics import finding_label, key_metrics, order_metrics, short_metric
from tui.screens.trajectories import int_ticks, relative, thin, y_range
from tui.viewmodels import TimelineItem


def test_numbers():
    assert F.num(None) == "–" and F.num(float("nan")) == "–"
    assert F.num(0.91234) == "0.912"
    assert F.num(12.345) == "12.345"
    assert F.num(123.45) == "123.5"
    assert F.num(123456.0) == "1.2e+05"
    assert F.num(0.0) == "0.000"
    assert F.signed(0.0125) == "+0.013"      # 0.0125 is 0.01250000000000000069 in binary
    assert F.signed(-1.5) == "−1.500"
    assert F.signed(0) == "0"
    assert F.signed(None) == ""
    assert F.nbytes(56) == "56 B"
    assert F.nbytes(1536) == "1.5 KiB"
    assert F.nbytes(3 * 1024 ** 2) == "3.0 MiB"
    assert F.ranges([1, 2, 3, 5, 7, 8]) == "1-3, 5, 7-8" and F.ranges([]) == ""


def test_change_colours_follow_metric_direction():
    from tui.metrics import higher_is_better
    assert F.change_text(0.5, True).style == "green"
    assert F.change_text(0.5, False).style == "red"      # perplexity up is bad
    assert F.change_text(-0.5, False).style == "green"
    assert F.change_text(0.5, None).style == ""
    assert higher_is_better("ppl") is False and higher_is_better("efficacy_top1") is True
    assert higher_is_better("forgetting") is False and higher_is_better("cs_reverse") is True
    assert higher_is_better("mystery") is None


def test_sparkline_by_hand():
    # min 0 -> ▁, max 4 -> █, 2 -> index round(0.5*7)=4 -> ▅
    assert F.sparkline([0, 2, 4]) == "▁▅█"
    assert F.sparkline([3, 3, 3]) == "▅▅▅"
    assert F.sparkline([]) == ""
    # 8 points into 4 cells: bucket means 0.5, 2.5, 4.5, 6.5 -> scaled 0, 1/3, 2/3, 1 of 7 steps
    assert F.sparkline(list(range(8)), width=4) == "▁▃▆█"
    # a 1% wobble of perplexity: the span is widened to 10% of 29.1 = 2.91 around the mid 28.955,
    # so 28.81 -> (28.81-27.5) / 2.91 * 7 = 3.15 -> ▄ and 29.1 -> 3.85 -> ▅: not a collapse to ▁
    assert F.sparkline([29.1, 28.81, 29.1]) == "▅▄▅"


def test_edit_label_and_metric_names():
    assert F.edit_label("Eiffel Tower", " Paris", " Rome") == "Eiffel Tower: Paris → Rome"
    assert F.edit_label("X", "", " b", 3) == "X: ? → b  (+2 more)"
    assert F.edit_label("", "a", "b") == ""
    assert short_metric(("rewrite", "efficacy_top1")) == "rw.eff"
    assert short_metric(("perplexity", "ppl")) == "ppl"
    assert short_metric(("retention", "efficacy_top1")) == "ret.eff"
    # an audit finding keeps its suite: accuracy of what?
    assert finding_label("attribute.accuracy") == "attr.acc"
    assert finding_label("distract.accuracy") == "dist.acc"
    assert finding_label("retention.forgetting") == "forgetting" and finding_label("perplexity.ppl") == "ppl"
    assert layer_of("transformer.h.5.mlp.fc_out.weight") == "5"
    assert layer_of("lm_head.weight") == ""


def test_metric_order_prefers_headlines_then_suites():
    ms = [("zeta", "x"), ("perplexity", "ppl"), ("attribute", "oa"), ("rewrite", "efficacy_top1"),
          ("neighborhood", "ns"), ("retention", "efficacy_top1")]
    assert order_metrics(ms) == [("rewrite", "efficacy_top1"), ("retention", "efficacy_top1"), ("neighborhood", "ns"),
                                 ("perplexity", "ppl"), ("attribute", "oa"), ("zeta", "x")]
    assert key_metrics(ms, 2) == [("neighborhood", "ns"), ("perplexity", "ppl")]


def _items(spec, head=-1):
    """spec: (version, parent, kind) in timeline order."""
    items = [TimelineItem(version_id=v, parent_id=p, step=i, kind=k, subject="", old="", new="",
                          n_requests=1, note="") for i, (v, p, k) in enumerate(spec)]
    items[head].is_head = True
    return items


def test_graph_linear():
    items = _items([(1, None, "base"), (2, 1, "edit"), (3, 2, "edit")])
    graph_lanes(items)
    assert [it.graph for it in items] == ["○", "●", "◉"]


def test_graph_links_a_reset_and_a_revert_to_the_versions_they_go_back_to():
    # steps 1..4 are versions 2..5; the revert of step 3 is a child of 3 (the version before step 3),
    # the reset to step 1 a child of 2. Each opens its lane at its parent's row and runs down to it.
    items = _items([(1, None, "base"), (2, 1, "edit"), (3, 2, "edit"), (4, 3, "edit"), (5, 4, "edit"),
                    (6, 3, "revert"), (7, 2, "reset")])
    graph_lanes(items)
    assert [it.graph for it in items] == [
        "○",
        "●─╮",        # 2: its second child (the reset, v7) gets lane 1 from here
        "●─┼─╮",      # 3: its second child (the revert, v6) gets lane 2, crossing lane 1
        "● │ │",
        "● │ │",      # 5: the end of lane 0
        "  │ ◆",      # the revert, at the foot of its lane
        "  ◉",        # the reset (the head), at the foot of lane 1
    ]


def test_graph_two_children_of_one_version():
    items = _items([(1, None, "base"), (2, 1, "edit"), (3, 2, "edit"), (4, 2, "revert"), (5, 2, "reset")])
    graph_lanes(items)
    assert [it.graph for it in items] == ["○", "●─┬─╮", "● │ │", "  ◆ │", "    ◉"]


def test_graph_a_lane_is_reused_after_it_ends():
    items = _items([(1, None, "base"), (2, 1, "edit"), (3, 1, "reset"), (4, 3, "edit")])
    graph_lanes(items)
    assert [it.graph for it in items] == ["○─╮", "● │", "  ◆", "  ◉"]


def test_filter_tokens():
    rows = [{"step": 3, "eff": 1.0, "flags": ["forgetting"], "text": "Norway: Oslo → Seoul"},
            {"step": 8, "eff": 0.0, "flags": ["failed"], "text": "Stockholm: France → Germany"},
            {"step": 9, "eff": None, "flags": [], "text": "revert step 7"}]
    fields = [Field("step", lambda r: r["step"]), Field("eff", lambda r: r["eff"]), Field("flag", lambda r: r["flags"])]

    def keep(text):
        pred = compile_filter(text, fields, lambda r: r["text"])
        return [r["step"] for r in rows if pred is None or pred(r)]
    assert keep("") == [3, 8, 9]
    assert keep("eff<1") == [8]                  # a row without a value never matches a comparison
    assert keep("flag:forgetting") == [3]
    assert keep("step>=8 germany") == [8]
    assert keep("step!=8 eff=1") == [3]
    with pytest.raises(FilterError, match="no field 'ppl' here"):
        compile_filter("ppl>3", fields, str)
    with pytest.raises(FilterError, match="is not a number"):
        compile_filter("eff<high", fields, str)


def test_plot_axes():
    assert int_ticks(0, 12) == list(range(0, 13))
    assert int_ticks(1, 40) == [0, 5, 10, 15, 20, 25, 30, 35, 40][1:]   # 5s from the first multiple ≥ 1
    assert int_ticks(0, 10_000)[:3] == [0, 1000, 2000]
    assert y_range([0.2, 0.9]) == (0.0, 1.0)     # shares stay on a 0–1 axis
    # perplexity 28.6..29.1: span max(0.5, 0.1*29.1=2.91) = 2.91 around 28.85, with a 20% margin
    lo, hi = y_range([29.1, 28.6, 28.9])
    assert lo == pytest.approx(28.85 - 0.6 * 2.91) and hi == pytest.approx(28.85 + 0.6 * 2.91)
    assert relative([2.0, 3.0]) == ([1.0, 1.5], "÷ its first value")
    # 10 points into 2 buckets of 5: each keeps its lowest and highest, in step order
    xs, ys = list(range(10)), [1.0, 5.0, 2.0, 0.0, 3.0, 3.0, 3.0, 9.0, 3.0, 3.0]
    assert thin(xs, ys, most=4) == ([1, 3, 5, 7], [5.0, 0.0, 3.0, 9.0])
    assert thin(xs, ys, most=10) == (xs, ys)
    assert relative([0.0, 0.5]) == ([0.0, 0.5], "minus its first value (0)")


def test_harm_changes_use_stored_comparisons_and_fixed_suites():
    items = _items([(1, None, "base"), (2, 1, "edit"), (3, 2, "edit"), (4, 3, "edit"), (5, 3, "reset")])
    # neighbourhood score: each step's own prompts; only the stored comparisons say how it changed
    ns = {2: {"none": 1.0, "base": 0.0}, 3: {"none": 0.5, "base": -0.5, "previous": -0.5},
          4: {"none": 1.0, "base": 0.0, "previous": 0.0}}
    assert harm.changes(("neighborhood", "ns"), items, ns, {}) == {2: 0.0, 3: -0.5, 4: 0.0}
    # perplexity: the same text every time; measured at 2 and 4 only, the base's value from the reference
    ppl = {2: {"none": 30.0}, 4: {"none": 33.0}}
    assert harm.changes(("perplexity", "ppl"), items, ppl, {"none": 29.0}) == {2: 1.0, 4: 3.0}


def test_harm_lost_steps_and_superseded():
    rows = [{"step": 1, "top1": 1.0, "top1_previous": 1.0}, {"step": 2, "top1": 0.0, "top1_previous": 1.0},
            {"step": 3, "top1": 0.0, "top1_previous": 0.0}]
    assert harm.lost_steps(rows, 4) == [2]
    # without top1_previous: the parent's rows, else the edit's efficacy when it was made
    rows = [{"step": 1, "top1": 0.0, "at_edit": 1.0}, {"step": 2, "top1": 0.0, "at_edit": 1.0}]
    assert harm.lost_steps(rows, 3, [{"step": 1, "top1": 0.0}]) == [2]
    f = harm.split_superseded([5, 6], {5: {("Colosseum", "{} is in")}, 6: {("Nile", "{} flows")}},
                              {("Colosseum", "{} is in")})
    assert (f.lost, f.superseded) == ([6], [5])
    assert harm.failed(0.5) and not harm.failed(1.0) and not harm.failed(float("nan")) and not harm.failed(None)
    assert harm.preferred({"previous": 0.1, "base": 0.2}) == 0.2 and math.isnan(harm.preferred({"none": float("nan")}))
