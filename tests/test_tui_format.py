"""Formatting helpers and the version-graph drawing, checked against hand-computed strings."""
from tui import format as F
from tui.data import graph_lanes, key_metrics, layer_of, order_metrics
from tui.screens.runs import short_metric
from tui.viewmodels import TimelineItem


def test_numbers():
    assert F.num(None) == "–"
    assert F.num(0.91234) == "0.912"
    assert F.num(12.345) == "12.345"
    assert F.num(123.45) == "123.5"
    assert F.num(123456.0) == "1.2e+05"
    assert F.num(0.0) == "0.000"
    assert F.signed(0.0125) == "+0.013"      # 0.0125 rounds half-even in binary: 0.0125 is 0.01250000000000000069
    assert F.signed(-1.5) == "−1.500"
    assert F.signed(0) == "0"
    assert F.signed(None) == ""
    assert F.nbytes(56) == "56 B"
    assert F.nbytes(1536) == "1.5 KiB"
    assert F.nbytes(3 * 1024 ** 2) == "3.0 MiB"


def test_change_colours_follow_metric_direction():
    assert F.change_text(0.5, True).style == "green"
    assert F.change_text(0.5, False).style == "red"      # perplexity up is bad
    assert F.change_text(-0.5, False).style == "green"
    assert F.change_text(0.5, None).style == ""
    assert F.higher_is_better("ppl") is False and F.higher_is_better("efficacy_top1") is True
    assert F.higher_is_better("mystery") is None


def test_sparkline_by_hand():
    # min 0 -> ▁, max 4 -> █, 2 -> index round(0.5*7)=4 -> ▅
    assert F.sparkline([0, 2, 4]) == "▁▅█"
    assert F.sparkline([3, 3, 3]) == "▅▅▅"
    assert F.sparkline([]) == ""
    # 8 points into 4 cells: bucket means 0.5, 2.5, 4.5, 6.5 -> scaled 0, 1/3, 2/3, 1 of 7 steps
    assert F.sparkline(list(range(8)), width=4) == "▁▃▆█"


def test_edit_label_and_metric_names():
    assert F.edit_label("Eiffel Tower", " Paris", " Rome") == "Eiffel Tower: Paris → Rome"
    assert F.edit_label("X", "", " b", 3) == "X: ? → b  (+2 more)"
    assert F.edit_label("", "a", "b") == ""
    assert short_metric(("rewrite", "efficacy_top1")) == "rw.eff"
    assert short_metric(("perplexity", "ppl")) == "ppl"
    assert layer_of("transformer.h.5.mlp.fc_out.weight") == "5"
    assert layer_of("lm_head.weight") == ""


def test_metric_order_prefers_headlines_then_suites():
    ms = [("zeta", "x"), ("perplexity", "ppl"), ("attribute", "oa"), ("rewrite", "efficacy_top1"),
          ("neighborhood", "ns")]
    assert order_metrics(ms) == [("rewrite", "efficacy_top1"), ("neighborhood", "ns"), ("perplexity", "ppl"),
                                 ("attribute", "oa"), ("zeta", "x")]
    assert key_metrics(ms, 2) == [("perplexity", "ppl"), ("neighborhood", "ns")]


def _items(spec):
    """spec: (version, parent, kind) in timeline order; the last one is the head."""
    items = [TimelineItem(version_id=v, parent_id=p, step=i, kind=k, subject="", old="", new="",
                          n_requests=1, note="") for i, (v, p, k) in enumerate(spec)]
    items[-1].is_head = True
    return items


def test_graph_linear():
    items = _items([(1, None, "base"), (2, 1, "edit"), (3, 2, "edit")])
    graph_lanes(items)
    assert [it.graph for it in items] == ["○", "●", "◉"]


def test_graph_reset_and_revert_branch_off():
    # versions 2..5 are steps 1..4; the revert of step 3 is a child of 3 (the version before step 3);
    # the reset to step 1 is a child of 2
    items = _items([(1, None, "base"), (2, 1, "edit"), (3, 2, "edit"), (4, 3, "edit"), (5, 4, "edit"),
                    (6, 3, "revert"), (7, 2, "reset")])
    graph_lanes(items)
    assert [it.graph for it in items] == [
        "○",
        "●",
        "●",          # 3 has two children (4 and the revert 6): its lane stays
        "●",
        "●",          # 5: tip of lane 0, no children; lane 0 still alive for the reset (child of 2)
        "├─◆",        # revert: child of 3 on lane 0, opens lane 1
        "├─◉",        # reset: child of 2 on lane 0; lane 1 ended with the revert (no children), so it is reused
    ]


def test_graph_lane_reused_after_it_ends():
    items = _items([(1, None, "base"), (2, 1, "edit"), (3, 1, "reset"), (4, 3, "edit")])
    graph_lanes(items)
    # lane 0 ends after the reset (v1's last child), so the head continues alone on lane 1
    assert [it.graph for it in items] == ["○", "●", "├─◆", "  ◉"]


def test_graph_crossing_a_live_lane():
    # 5 forks from the inner version 2 while lane 1 (4 -> 6) is alive: the fork line crosses lane 1
    items = _items([(1, None, "base"), (2, 1, "edit"), (3, 2, "edit"), (4, 1, "reset"), (5, 2, "revert"),
                    (6, 4, "edit")])
    graph_lanes(items)
    assert [it.graph for it in items] == ["○", "●", "●", "├─◆", "├─┼─◆", "  ◉"]
